# Aggregation over machine types: AUROC and official DCASE tables, then the HTML report.


rule aggregate:
    input:
        scores=expand(f"{R}/scores/{{machine}}.csv", machine=MACHINES),
        # thresholds for the decisions table, read beside each score table
        info=expand(f"{R}/scores/{{machine}}.json", machine=MACHINES),
    output:
        auroc=report(
            f"{R}/tables/auroc.csv", caption="../report/auroc.rst", category="Tables"
        ),
        auroc_md=f"{R}/tables/auroc.md",
        dcase=report(
            f"{R}/tables/dcase_metrics.csv",
            caption="../report/dcase_metrics.rst",
            category="Tables",
        ),
        dcase_md=f"{R}/tables/dcase_metrics.md",
        decisions=report(
            f"{R}/tables/decisions.csv",
            caption="../report/decisions.rst",
            category="Tables",
        ),
        decisions_md=f"{R}/tables/decisions.md",
        summary=f"{R}/tables/summary.json",
    log:
        f"{R}/logs/aggregate.log",
    conda:
        "../../envs/data.yaml"
    params:
        tables=lambda wc, output: os.path.dirname(output.auroc),
    shell:
        "eat-asd aggregate --scores {input.scores:q} --tables-dir {params.tables:q} > {log:q} 2>&1"


rule report:
    input:
        auroc=rules.aggregate.output.auroc,
        dcase=rules.aggregate.output.dcase,
        summary=rules.aggregate.output.summary,
        decisions=rules.aggregate.output.decisions,
        plots=expand(
            f"{R}/plots/{{machine}}_{{kind}}.png",
            machine=MACHINES,
            kind=["roc", "scores"],
        ),
        training=f"{R}/encoder/summary.json",
    output:
        report(f"{R}/report.html", caption="../report/report.rst", category="Report"),
    log:
        f"{R}/logs/report.log",
    conda:
        "../../envs/data.yaml"
    params:
        config=as_json(config),
        tables=lambda wc, input: os.path.dirname(input.auroc),
        plots=lambda wc, input: os.path.dirname(input.plots[0]),
        results=lambda wc, output: os.path.dirname(output[0]),
    shell:
        "eat-asd report --tables-dir {params.tables:q} --plots-dir {params.plots:q}"
        " --results-dir {params.results:q} --config-json {params.config:q}"
        " --training-summary {input.training:q} --out {output:q} > {log:q} 2>&1"
