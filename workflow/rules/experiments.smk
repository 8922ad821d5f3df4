# Experiments (config key `experiments`): every variant x seed as its own chain of jobs, each job
# named by the key of what it reads and the settings that change its result, so runs that coincide
# in a step share its job. The jobs are the one-run rules with other paths and settings
# (`use rule ... with`); the comparison of the variants closes the grid.


use rule features as exp_features with:
    output:
        f"{X}/features/{{fkey}}/{{machine}}.{{part}}.safetensors",
    log:
        f"{R}/logs/experiments/features/{{fkey}}/{{machine}}.{{part}}.log",
    benchmark:
        f"{R}/benchmarks/experiments/features/{{fkey}}/{{machine}}.{{part}}.tsv"
    params:
        settings=lambda wc: as_json(EXP.features[wc.fkey]),


use rule train_encoder as exp_train_encoder with:
    input:
        features=get_exp_training_features,
        manifests=expand(f"{R}/manifests/{{machine}}.train.csv", machine=TRAIN_MACHINES),
        pretrained=pretrained_encoder_files(),
        audio=get_exp_training_audio,
    output:
        config=f"{X}/train/{{tkey}}/encoder/config.json",
        weights=f"{X}/train/{{tkey}}/encoder/model.safetensors",
        modeling=f"{X}/train/{{tkey}}/encoder/modeling_eat.py",
        summary=f"{X}/train/{{tkey}}/summary.json",
        log_csv=f"{X}/train/{{tkey}}/train_log.csv",
    log:
        f"{R}/logs/experiments/train/{{tkey}}.log",
    benchmark:
        f"{R}/benchmarks/experiments/train/{{tkey}}.tsv"
    params:
        encoder=lambda wc, input: (
            os.path.dirname(input.pretrained[0])
            if input.pretrained
            else config["encoder"]
        ),
        revision=config["encoder_revision"] or "",
        settings=lambda wc: as_json(EXP.trainings[wc.tkey].settings),
        features=lambda wc: as_json(EXP.trainings[wc.tkey].features),
        out=lambda wc, output: os.path.dirname(output.summary),


use rule embed as exp_embed with:
    input:
        encoder_config=get_exp_encoder_file("config.json"),
        encoder_weights=get_exp_encoder_file("model.safetensors"),
        features=get_exp_embed_features,
        manifests=expand(f"{R}/manifests/{{{{machine}}}}.{{part}}.csv", part=PARTS),
    output:
        f"{X}/embed/{{ekey}}/{{machine}}.npz",
    log:
        f"{R}/logs/experiments/embed/{{ekey}}/{{machine}}.log",
    benchmark:
        f"{R}/benchmarks/experiments/embed/{{ekey}}/{{machine}}.tsv"
    params:
        encoder=lambda wc, input: os.path.dirname(input.encoder_config),
        settings=lambda wc: as_json(EXP.embeddings[wc.ekey].settings),


use rule score as exp_score with:
    input:
        embeddings=lambda wc: exp_embeddings_file(EXP.scorings[wc.skey].embedding),
        manifests=expand(f"{R}/manifests/{{{{machine}}}}.{{part}}.csv", part=PARTS),
        bank_embeddings=get_exp_bank_files("embeddings"),
        bank_manifests=get_exp_bank_files("manifests"),
        ground_truth=ground_truth_inputs,
    output:
        scores=f"{X}/score/{{skey}}/{{machine}}.csv",
        info=f"{X}/score/{{skey}}/{{machine}}.json",
        roc=f"{X}/score/{{skey}}/{{machine}}_roc.png",
        hist=f"{X}/score/{{skey}}/{{machine}}_scores.png",
    log:
        f"{R}/logs/experiments/score/{{skey}}/{{machine}}.log",
    params:
        settings=lambda wc: as_json(EXP.scorings[wc.skey].settings),
        ground_truth=config["ground_truth"] or "",


rule exp_fuse:
    input:
        scores=get_exp_fuse_members("csv"),
        infos=get_exp_fuse_members("json"),
    output:
        scores=f"{X}/fuse/{{ukey}}/{{machine}}.csv",
        info=f"{X}/fuse/{{ukey}}/{{machine}}.json",
    log:
        f"{R}/logs/experiments/fuse/{{ukey}}/{{machine}}.log",
    conda:
        "../../envs/data.yaml"
    params:
        quantile=lambda wc: EXP.fusions[wc.ukey].threshold_quantile,
    shell:
        "eat-asd fuse --scores {input.scores:q} --infos {input.infos:q}"
        " --threshold-quantile {params.quantile:q} --out {output.scores:q} --info {output.info:q} > {log:q} 2>&1"


use rule aggregate as exp_aggregate with:
    input:
        scores=get_exp_run_files("csv"),
        info=get_exp_run_files("json"),
    output:
        auroc=f"{X}/runs/{{variant}}/seed_{{seed}}/tables/auroc.csv",
        auroc_md=f"{X}/runs/{{variant}}/seed_{{seed}}/tables/auroc.md",
        dcase=f"{X}/runs/{{variant}}/seed_{{seed}}/tables/dcase_metrics.csv",
        dcase_md=f"{X}/runs/{{variant}}/seed_{{seed}}/tables/dcase_metrics.md",
        means=f"{X}/runs/{{variant}}/seed_{{seed}}/tables/dcase_summary.csv",
        means_md=f"{X}/runs/{{variant}}/seed_{{seed}}/tables/dcase_summary.md",
        decisions=f"{X}/runs/{{variant}}/seed_{{seed}}/tables/decisions.csv",
        decisions_md=f"{X}/runs/{{variant}}/seed_{{seed}}/tables/decisions.md",
        summary=f"{X}/runs/{{variant}}/seed_{{seed}}/tables/summary.json",
    log:
        f"{R}/logs/experiments/aggregate/{{variant}}/seed_{{seed}}.log",


rule exp_compare:
    input:
        scores=[f for seeds in exp_runs().values() for fs in seeds.values() for f in fs],
        tables=[f"{exp_run_dir(v, s)}/tables/dcase_metrics.md" for v, s in EXP.runs()],
    output:
        table=report(
            f"{X}/comparison.csv",
            caption="../report/comparison.rst",
            category="Experiments",
        ),
        table_md=f"{X}/comparison.md",
        plot=report(
            f"{X}/comparison.png",
            caption="../report/comparison_plot.rst",
            category="Experiments",
        ),
        html=f"{X}/report.html",
    log:
        f"{R}/logs/experiments/compare.log",
    conda:
        "../../envs/data.yaml"
    params:
        # in the config's order of variants (as_json would sort them)
        runs=json.dumps(exp_runs()),
        tables=as_json(
            {
                f"{v}, seed {s}": f"{exp_run_dir(v, s)}/tables/dcase_metrics.md"
                for v, s in EXP.runs()
            }
        ),
        reference=EXP.reference,
        bootstrap=EXP.bootstrap,
    shell:
        "eat-asd compare --runs-json {params.runs:q} --reference {params.reference:q}"
        " --bootstrap {params.bootstrap:q} --run-tables-json {params.tables:q}"
        " --table {output.table:q} {output.table_md:q} --plot {output.plot:q} --html {output.html:q}"
        " > {log:q} 2>&1"


ALL_OUTPUTS = [rules.exp_compare.output.html]
