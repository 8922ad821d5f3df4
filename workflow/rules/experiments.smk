# Experiments (config key `experiments`): every variant x seed as its own chain of jobs, each job
# named by the key of what it reads and the settings that change its result, so runs that coincide
# in a step share its job. The jobs are the one-run rules with other paths and settings
# (`use rule ... with`); the comparison of the variants closes the grid.


use rule features as exp_features with:
    output:
        GRID.features(),
    log:
        RUN.log("experiments", "features", "{fkey}", "{machine}.{part}"),
    benchmark:
        RUN.benchmark("experiments", "features", "{fkey}", "{machine}.{part}")
    params:
        settings=lambda wc: as_json(EXP.features[wc.fkey]),


use rule train_encoder as exp_train_encoder with:
    input:
        features=get_exp_training_features,
        manifests=rules.train_encoder.input.manifests,
        pretrained=rules.train_encoder.input.pretrained,
        audio=get_exp_training_audio,
    output:
        config=GRID.training().encoder_config,
        weights=GRID.training().encoder_weights,
        modeling=GRID.training().encoder_modeling,
        summary=GRID.training().summary,
        log_csv=GRID.training().log,
    log:
        RUN.log("experiments", "train", "{tkey}"),
    benchmark:
        RUN.benchmark("experiments", "train", "{tkey}")
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
        encoder_config=get_exp_encoder_file(CONFIG_FILE),
        encoder_weights=get_exp_encoder_file(WEIGHTS_FILE),
        features=get_exp_embed_features,
        manifests=rules.embed.input.manifests,
    output:
        GRID.embeddings(),
    log:
        RUN.log("experiments", "embed", "{ekey}", "{machine}"),
    benchmark:
        RUN.benchmark("experiments", "embed", "{ekey}", "{machine}")
    params:
        encoder=lambda wc, input: os.path.dirname(input.encoder_config),
        settings=lambda wc: as_json(EXP.embeddings[wc.ekey].settings),


use rule score as exp_score with:
    input:
        embeddings=lambda wc: exp_embeddings_file(EXP.scorings[wc.skey].embedding),
        manifests=rules.score.input.manifests,
        bank_embeddings=get_exp_bank_files("embeddings"),
        bank_manifests=get_exp_bank_files("manifests"),
        ground_truth=get_ground_truth,
    output:
        scores=GRID.scores("score", "{skey}"),
        info=GRID.score_info("score", "{skey}"),
        roc=GRID.plot("{skey}", kind="roc"),
        hist=GRID.plot("{skey}", kind="scores"),
    log:
        RUN.log("experiments", "score", "{skey}", "{machine}"),
    params:
        settings=lambda wc: as_json(EXP.scorings[wc.skey].settings),
        ground_truth=config["ground_truth"] or "",


rule exp_fuse:
    input:
        scores=get_exp_fuse_members(info=False),
        infos=get_exp_fuse_members(info=True),
    output:
        scores=GRID.scores("fuse", "{ukey}"),
        info=GRID.score_info("fuse", "{ukey}"),
    log:
        RUN.log("experiments", "fuse", "{ukey}", "{machine}"),
    conda:
        "../../envs/data.yaml"
    params:
        quantile=lambda wc: EXP.fusions[wc.ukey].threshold_quantile,
    shell:
        "eat-asd fuse --scores {input.scores:q} --infos {input.infos:q}"
        " --threshold-quantile {params.quantile:q} --out {output.scores:q} --info {output.info:q} > {log:q} 2>&1"


use rule aggregate as exp_aggregate with:
    input:
        scores=get_exp_run_files(info=False),
        info=get_exp_run_files(info=True),
    output:
        **GRID.tables().outputs(),
    log:
        RUN.log("experiments", "aggregate", "{variant}", "seed_{seed}"),


rule exp_compare:
    input:
        scores=[f for seeds in exp_runs().values() for fs in seeds.values() for f in fs],
        tables=[str(GRID.tables(v, s).dcase[1]) for v, s in EXP.runs()],
    output:
        table=report(
            GRID.comparison[0],
            caption="../report/comparison.rst",
            category="Experiments",
        ),
        table_md=GRID.comparison[1],
        plot=report(
            GRID.comparison_plot,
            caption="../report/comparison_plot.rst",
            category="Experiments",
        ),
        html=GRID.report,
    log:
        RUN.log("experiments", "compare"),
    conda:
        "../../envs/data.yaml"
    params:
        # in the config's order of variants (as_json would sort them)
        runs=json.dumps(exp_runs()),
        tables=as_json(
            {f"{v}, seed {s}": str(GRID.tables(v, s).dcase[1]) for v, s in EXP.runs()}
        ),
        reference=EXP.reference,
        bootstrap=EXP.bootstrap,
    shell:
        "eat-asd compare --runs-json {params.runs:q} --reference {params.reference:q}"
        " --bootstrap {params.bootstrap:q} --run-tables-json {params.tables:q}"
        " --table {output.table:q} {output.table_md:q} --plot {output.plot:q} --html {output.html:q}"
        " > {log:q} 2>&1"


ALL_OUTPUTS = [rules.exp_compare.output.html]
