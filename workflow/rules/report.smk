# Aggregation over machine types: the official DCASE result table and its means, AUROC and decisions, then the HTML report.


rule aggregate:
    input:
        scores=expand(f"{R}/scores/{{machine}}.csv", machine=MACHINES),
        # thresholds for the decisions table, read beside each score table
        info=expand(f"{R}/scores/{{machine}}.json", machine=MACHINES),
    output:
        auroc=report(f"{R}/tables/auroc.csv", category="Tables"),
        auroc_md=f"{R}/tables/auroc.md",
        dcase=report(f"{R}/tables/dcase_metrics.csv", category="Tables"),
        dcase_md=f"{R}/tables/dcase_metrics.md",
        means=report(f"{R}/tables/dcase_summary.csv", category="Tables"),
        means_md=f"{R}/tables/dcase_summary.md",
        decisions=report(f"{R}/tables/decisions.csv", category="Tables"),
        decisions_md=f"{R}/tables/decisions.md",
        summary=f"{R}/tables/summary.json",
    params:
        stage=STAGE,
    log:
        f"{R}/logs/aggregate.log",
    conda:
        "../../envs/data.yaml"
    shell:
        "{params.stage} aggregate --scores {input.scores} --tables-dir $(dirname {output.auroc}) > {log} 2>&1"


rule report:
    input:
        auroc=rules.aggregate.output.auroc,
        dcase=rules.aggregate.output.dcase,
        means=rules.aggregate.output.means,
        summary=rules.aggregate.output.summary,
        decisions=rules.aggregate.output.decisions,
        plots=expand(f"{R}/plots/{{machine}}_{{kind}}.png", machine=MACHINES, kind=["roc", "scores"]),
        training=f"{R}/encoder/summary.json",
    output:
        report(f"{R}/report.html", category="Report"),
    params:
        stage=STAGE,
        config=as_json(config),
        results=lambda wc, output: os.path.dirname(output[0]),
    log:
        f"{R}/logs/report.log",
    conda:
        "../../envs/data.yaml"
    shell:
        "{params.stage} report --tables-dir $(dirname {input.auroc}) --plots-dir $(dirname {input.plots[0]})"
        " --results-dir {params.results} --config-json {params.config:q} --training-summary {input.training}"
        " --out {output} > {log} 2>&1"
