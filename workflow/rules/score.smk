# Per machine type, in parallel: embeddings of the memory bank and test clips, then kNN scores,
# decisions and plots, then the DCASE submission files per section. Each job reads only its
# own machine type's settings (params computed from the wildcards); with scoring.bank_split = all
# its score job also reads the other machine types' embeddings (one bank of every machine type).


rule embed:
    input:
        encoder_config=f"{ENCODER_OUT}/config.json",
        encoder_weights=f"{ENCODER_OUT}/model.safetensors",
        features=expand(f"{R}/features/{{{{machine}}}}.{{part}}.safetensors", part=PARTS),
        manifests=expand(f"{R}/manifests/{{{{machine}}}}.{{part}}.csv", part=PARTS),
    output:
        f"{R}/embeddings/{{machine}}.npz",
    params:
        stage=STAGE,
        settings=embedding_params,
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
        "{params.stage} embed --encoder $(dirname {input.encoder_config}) --features {input.features}"
        " --manifests {input.manifests} --settings {params.settings:q} --device {params.device}"
        " --threads {threads} --out {output} > {log} 2>&1"


rule score:
    input:
        embeddings=f"{R}/embeddings/{{machine}}.npz",
        manifests=expand(f"{R}/manifests/{{{{machine}}}}.{{part}}.csv", part=PARTS),
        bank_embeddings=lambda wc: other_banks(wc, "embeddings"),
        bank_manifests=lambda wc: other_banks(wc, "manifests"),
    output:
        scores=f"{R}/scores/{{machine}}.csv",
        info=f"{R}/scores/{{machine}}.json",
        roc=report(f"{R}/plots/{{machine}}_roc.png", category="ROC curves", labels={"machine": "{machine}"}),
        hist=report(f"{R}/plots/{{machine}}_scores.png", category="Score histograms", labels={"machine": "{machine}"}),
    params:
        stage=STAGE,
        settings=scoring_params,
    threads: 1
    resources:
        mem_mb=2000,
    log:
        f"{R}/logs/score/{{machine}}.log",
    conda:
        "../../envs/torch.yaml"
    shell:
        "{params.stage} score --embeddings {input.embeddings} --manifests {input.manifests} --settings {params.settings:q}"
        " --bank-embeddings {input.bank_embeddings} --bank-manifests {input.bank_manifests}"
        " --threads {threads} --out {output.scores} --info {output.info} --plots-dir $(dirname {output.roc}) > {log} 2>&1"


# DCASE submission files of one section, cut from the machine type's score table (tiny: run locally).
localrules:
    submission,


rule submission:
    input:
        f"{R}/scores/{{machine}}.csv",
    output:
        scores=f"{R}/submission/anomaly_score_{{machine}}_section_{{section}}_test.csv",
        decisions=f"{R}/submission/decision_result_{{machine}}_section_{{section}}_test.csv",
    params:
        stage=STAGE,
    log:
        f"{R}/logs/submission/{{machine}}_{{section}}.log",
    conda:
        "../../envs/data.yaml"
    shell:
        "{params.stage} submission --scores {input} --section {wildcards.section}"
        " --out-dir $(dirname {output.scores}) > {log} 2>&1"
