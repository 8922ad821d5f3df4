# Per machine type, in parallel: embeddings of the memory bank and test clips, then kNN scores,
# decisions, DCASE submission files and plots. Each reads only its own machine's settings.


rule embed:
    input:
        encoder_config=f"{ENCODER_OUT}/config.json",
        encoder_weights=f"{ENCODER_OUT}/model.safetensors",
        features=f"{R}/features/{{machine}}.safetensors",
        manifest=f"{R}/manifests/{{machine}}.csv",
    output:
        f"{R}/embeddings/{{machine}}.npz",
    params:
        settings=embedding_params,
        encoder=ENCODER_OUT,
        device=config["device"],
    threads: 2
    resources:
        mem_mb=4000,
    log:
        f"{R}/logs/embed/{{machine}}.log",
    benchmark:
        f"{R}/benchmarks/embed/{{machine}}.tsv"
    conda:
        "../../envs/torch.yaml"
    shell:
        "{STAGE} embed --encoder {params.encoder} --features {input.features} --manifest {input.manifest}"
        " --settings {params.settings:q} --device {params.device} --threads {threads} --out {output} > {log} 2>&1"


rule score:
    input:
        embeddings=f"{R}/embeddings/{{machine}}.npz",
        manifest=f"{R}/manifests/{{machine}}.csv",
    output:
        scores=f"{R}/scores/{{machine}}.csv",
        info=f"{R}/scores/{{machine}}.json",
        roc=report(f"{R}/plots/{{machine}}_roc.png", category="ROC curves", labels={"machine": "{machine}"}),
        hist=report(f"{R}/plots/{{machine}}_scores.png", category="Score histograms", labels={"machine": "{machine}"}),
    params:
        settings=scoring_params,
    threads: 1
    resources:
        mem_mb=2000,
    log:
        f"{R}/logs/score/{{machine}}.log",
    conda:
        "../../envs/torch.yaml"
    shell:
        "{STAGE} score --embeddings {input.embeddings} --manifest {input.manifest} --settings {params.settings:q}"
        " --threads {threads} --out {output.scores} --info {output.info} --plots-dir {R}/plots > {log} 2>&1"


# DCASE submission files of one section, cut from the machine type's score table (tiny: run locally).
localrules:
    submission,


rule submission:
    input:
        f"{R}/scores/{{machine}}.csv",
    output:
        scores=f"{R}/submission/anomaly_score_{{machine}}_section_{{section}}_test.csv",
        decisions=f"{R}/submission/decision_result_{{machine}}_section_{{section}}_test.csv",
    log:
        f"{R}/logs/submission/{{machine}}_{{section}}.log",
    conda:
        "../../envs/data.yaml"
    shell:
        "{STAGE} submission --scores {input} --section {wildcards.section} --out-dir {R}/submission > {log} 2>&1"
