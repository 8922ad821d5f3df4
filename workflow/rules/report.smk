# Aggregation over machine types: the official DCASE result table and its means, AUROC and decisions,
# then the HTML report.


rule aggregate:
    input:
        scores=expand(f"{R}/scores/{{machine}}.csv", machine=MACHINES),
        # the decision thresholds, for the decisions table
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
        means=report(
            f"{R}/tables/dcase_summary.csv",
            caption="../report/dcase_summary.rst",
            category="Tables",
        ),
        means_md=f"{R}/tables/dcase_summary.md",
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
        plots=expand(
            f"{R}/plots/{{machine}}_{{kind}}.png",
            machine=MACHINES,
            kind=["roc", "scores"],
        ),
        training=f"{R}/encoder/summary.json",
        # what the features changed about the clips (resampling, mix-down, padding)
        features=expand(
            f"{R}/features/{{machine}}.{{part}}.safetensors",
            machine=MACHINES,
            part=PARTS,
        ),
    output:
        report(f"{R}/report.html", caption="../report/report.rst", category="Report"),
    log:
        f"{R}/logs/report.log",
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
