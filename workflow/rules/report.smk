# Aggregation over machine types: AUROC and official DCASE tables, then the HTML report.


rule aggregate:
    input:
        expand(f"{R}/scores/{{machine}}.csv", machine=MACHINES),
    output:
        auroc=report(f"{R}/tables/auroc.csv", category="Tables"),
        auroc_md=f"{R}/tables/auroc.md",
        dcase=report(f"{R}/tables/dcase_metrics.csv", category="Tables"),
        dcase_md=f"{R}/tables/dcase_metrics.md",
        summary=f"{R}/tables/summary.json",
    log:
        f"{R}/logs/aggregate.log",
    conda:
        "../../envs/data.yaml"
    shell:
        "{STAGE} aggregate --scores {input} --tables-dir {R}/tables > {log} 2>&1"


rule report:
    input:
        tables=rules.aggregate.output,
        plots=expand(f"{R}/plots/{{machine}}_{{kind}}.png", machine=MACHINES, kind=["roc", "scores"]),
        training=f"{R}/encoder/summary.json",
    output:
        report(f"{R}/report.html", category="Report"),
    params:
        config=as_json(config),
    log:
        f"{R}/logs/report.log",
    conda:
        "../../envs/data.yaml"
    shell:
        "{STAGE} report --tables-dir {R}/tables --plots-dir {R}/plots --results-dir {R} --config-json {params.config:q}"
        " --training-summary {input.training} --out {output} > {log} 2>&1"
