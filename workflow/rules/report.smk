# Aggregation over machine types: the official DCASE result table and its means, AUROC and decisions,
# then the HTML report.


rule aggregate:
    input:
        scores=[RUN.scores(m) for m in MACHINES],
        # the decision thresholds, for the decisions table
        info=[RUN.score_info(m) for m in MACHINES],
    output:
        **table_outputs(RUN.tables),
    log:
        RUN.log("aggregate"),
    conda:
        "../../envs/data.yaml"
    shell:
        "eat-asd aggregate --scores {input.scores:q} --infos {input.info:q}"
        " --auroc {output.auroc:q} {output.auroc_md:q} --dcase {output.dcase:q} {output.dcase_md:q}"
        " --means {output.means:q} {output.means_md:q}"
        " --decisions {output.decisions:q} {output.decisions_md:q} --summary {output.summary:q}"
        " > {log:q} 2>&1"


rule report:
    input:
        auroc=rules.aggregate.output.auroc,
        dcase=rules.aggregate.output.dcase,
        means=rules.aggregate.output.means,
        summary=rules.aggregate.output.summary,
        decisions=rules.aggregate.output.decisions,
        plots=[RUN.plot(m, kind) for m in MACHINES for kind in PLOT_KINDS],
        training=rules.train_encoder.output.summary,
        # what the features changed about the clips (resampling, mix-down, padding)
        features=[RUN.features(m, p) for m in MACHINES for p in PARTS],
    output:
        report(RUN.report, caption="../report/report.rst", category="Report"),
    log:
        RUN.log("report"),
    conda:
        "../../envs/data.yaml"
    params:
        # as shown; every setting that changes a result reruns the jobs before this one
        config=untracked(as_json(config)),
        results=lambda wc, output: os.path.dirname(output[0]),
    shell:
        "eat-asd report --auroc {input.auroc:q} --dcase {input.dcase:q} --means {input.means:q}"
        " --decisions {input.decisions:q} --summary {input.summary:q} --plots {input.plots:q}"
        " --results-dir {params.results:q} --config-json {params.config:q}"
        " --training-summary {input.training:q} --features {input.features:q}"
        " --out {output:q} > {log:q} 2>&1"
