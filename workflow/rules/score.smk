# Per machine type, in parallel: embeddings of the memory bank and test clips, then kNN scores,
# decisions and plots, then the DCASE submission files per section. Each job reads only its
# own machine type's settings (params computed from the wildcards); with scoring.bank_split = all
# its score job also reads the other machine types' embeddings (one bank of every machine type).


rule embed:
    input:
        encoder_config=rules.train_encoder.output.config,
        encoder_weights=rules.train_encoder.output.weights,
        features=[RUN.features(part=p) for p in PARTS],
        manifests=[RUN.manifest(part=p) for p in PARTS],
    output:
        RUN.embeddings(),
    log:
        RUN.log("embed", "{machine}"),
    benchmark:
        RUN.benchmark("embed", "{machine}")
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
        embeddings=rules.embed.output[0],
        manifests=[RUN.manifest(part=p) for p in PARTS],
        bank_embeddings=get_bank_embeddings,
        bank_manifests=get_bank_manifests,
        ground_truth=get_ground_truth,
    output:
        scores=RUN.scores(),
        info=RUN.score_info(),
        roc=report(
            RUN.plot(kind="roc"),
            caption="../report/roc.rst",
            category="ROC curves",
            labels={"machine type": "{machine}"},
        ),
        hist=report(
            RUN.plot(kind="scores"),
            caption="../report/scores.rst",
            category="Score histograms",
            labels={"machine type": "{machine}"},
        ),
    log:
        RUN.log("score", "{machine}"),
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
        rules.score.output.scores,
    output:
        scores=RUN.submission(ANOMALY_SCORE),
        decisions=RUN.submission(DECISION_RESULT),
    log:
        RUN.log("submission", "{machine}_{section}"),
    localrule: True
    conda:
        "../../envs/data.yaml"
    shell:
        "eat-asd submission --scores {input:q} --section {wildcards.section:q}"
        " --out-scores {output.scores:q} --out-decisions {output.decisions:q} > {log:q} 2>&1"
