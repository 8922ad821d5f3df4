# Per machine type, in parallel: embeddings of the memory bank and test clips, then kNN scores,
# decisions and plots, then the DCASE submission files per section. Each job reads only its
# own machine type's settings (params computed from the wildcards); with scoring.bank_split = all
# its score job also reads the other machine types' embeddings (one bank of every machine type).


rule embed:
    input:
        encoder_config=f"{ENCODER_OUT}/config.json",
        encoder_weights=f"{ENCODER_OUT}/model.safetensors",
        features=expand(
            f"{R}/features/{{{{machine}}}}.{{part}}.safetensors", part=PARTS
        ),
        manifests=expand(f"{R}/manifests/{{{{machine}}}}.{{part}}.csv", part=PARTS),
    output:
        f"{R}/embeddings/{{machine}}.npz",
    log:
        f"{R}/logs/embed/{{machine}}.log",
    benchmark:
        f"{R}/benchmarks/embed/{{machine}}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=4000,
    params:
        encoder=lambda wc, input: os.path.dirname(input.encoder_config),
        settings=embedding_params,
        data_root=untracked(config["data_root"]),
        batch=untracked(lambda wc: embedding_settings(wc)["batch_size"]),
    shell:
        "eat-asd embed --encoder {params.encoder:q} --features {input.features:q}"
        " --manifests {input.manifests:q} --data-root {params.data_root:q}"
        " --settings {params.settings:q} --batch-size {params.batch:q}"
        " --threads {threads} --out {output:q} > {log:q} 2>&1"


rule score:
    input:
        embeddings=f"{R}/embeddings/{{machine}}.npz",
        manifests=expand(f"{R}/manifests/{{{{machine}}}}.{{part}}.csv", part=PARTS),
        bank_embeddings=lambda wc: other_banks(wc, "embeddings"),
        bank_manifests=lambda wc: other_banks(wc, "manifests"),
        ground_truth=ground_truth_inputs,
    output:
        scores=f"{R}/scores/{{machine}}.csv",
        info=f"{R}/scores/{{machine}}.json",
        roc=report(
            f"{R}/plots/{{machine}}_roc.png",
            caption="../report/roc.rst",
            category="ROC curves",
            labels={"machine type": "{machine}"},
        ),
        hist=report(
            f"{R}/plots/{{machine}}_scores.png",
            caption="../report/scores.rst",
            category="Score histograms",
            labels={"machine type": "{machine}"},
        ),
    log:
        f"{R}/logs/score/{{machine}}.log",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        settings=scoring_params,
        # "" when the test clips carry their labels in their names
        ground_truth=config["ground_truth"] or "",
    shell:
        "eat-asd score --embeddings {input.embeddings:q} --manifests {input.manifests:q}"
        " --bank-embeddings {input.bank_embeddings:q} --bank-manifests {input.bank_manifests:q}"
        " --settings {params.settings:q} --threads {threads} --out {output.scores:q}"
        " --info {output.info:q} --roc {output.roc:q} --histogram {output.hist:q}"
        " --ground-truth={params.ground_truth:q} > {log:q} 2>&1"


# DCASE submission files of one section, cut from the machine type's score table (tiny: run locally;
# a rule's own `localrule`, unlike a `localrules` list, holds under a module's rule-name prefix).
rule submission:
    input:
        f"{R}/scores/{{machine}}.csv",
    output:
        scores=f"{R}/submission/anomaly_score_{{machine}}_section_{{section}}_test.csv",
        decisions=f"{R}/submission/decision_result_{{machine}}_section_{{section}}_test.csv",
    log:
        f"{R}/logs/submission/{{machine}}_{{section}}.log",
    localrule: True
    conda:
        "../../envs/data.yaml"
    shell:
        "eat-asd submission --scores {input:q} --section {wildcards.section:q}"
        " --out-scores {output.scores:q} --out-decisions {output.decisions:q} > {log:q} 2>&1"
