# The fine-tuned encoder's model card (README.md in the encoder folder), from the run's tables,
# training summary and manifests. Tiny: runs in the main Snakemake process, which also knows the
# command that started the run (EAT_ASD_COMMAND, set in common.smk; not a param, so another
# command line alone reruns nothing).


rule model_card:
    input:
        summary=rules.aggregate.output.summary,
        auroc=rules.aggregate.output.auroc,
        training=rules.train_encoder.output.summary,
        weights=rules.train_encoder.output.weights,
        manifests=[RUN.manifest(m, p) for m in MACHINES for p in PARTS],
    output:
        RUN.training.model_card,
    log:
        RUN.log("model_card"),
    localrule: True
    conda:
        "../../envs/data.yaml"
    params:
        # as shown; every setting that changes a result reruns the jobs before this one
        config=untracked(as_json(config)),
    shell:
        "eat-asd model-card --summary {input.summary:q} --auroc {input.auroc:q}"
        " --training-summary {input.training:q} --manifests {input.manifests:q}"
        ' --config-json {params.config:q} --command "$EAT_ASD_COMMAND" --out {output:q} > {log:q} 2>&1'
