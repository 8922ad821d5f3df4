# Data: the demo (when configured), then per machine type and part (train | test) a manifest
# and its cached features. Train and test stay apart so that replacing test clips never
# retrains the shared encoder.


if config["demo"]:
    DEMO_CLIPS = [
        p for plan in PLAN.values() for part in PARTS for p in plan.files(part)
    ]

    rule make_demo:
        output:
            DEMO_CLIPS,
            encoder_config=f"{config['encoder']}/{CONFIG_FILE}",
            encoder_weights=f"{config['encoder']}/{WEIGHTS_FILE}",
        log:
            RUN.log("make_demo"),
        conda:
            "../../envs/torch.yaml"
        params:
            d=config["demo"],
            # where the first clip goes, less its path below data_root (a module's prefix stays)
            data_root=lambda wc, output: output[0][
                : -len(os.path.relpath(DEMO_CLIPS[0], config["data_root"])) - 1
            ],
            encoder=lambda wc, output: os.path.dirname(output.encoder_config),
        shell:
            "eat-asd demo --data-root {params.data_root:q} --encoder {params.encoder:q}"
            " --seed {params.d[seed]:q} --seconds {params.d[seconds]:q}"
            " --train-source {params.d[train_source]:q} --train-target {params.d[train_target]:q}"
            " --test-per-cell {params.d[test_per_cell]:q} --channels {params.d[channels]:q}"
            " > {log:q} 2>&1"


# Real data: the clips are not inputs (their paths follow data_root); their contents and paths below
# data_root (a digest, the param `contents`) decide what is stale, so a moved or copied data set reruns
# nothing. The demo's clips, made by make_demo, are inputs.
rule manifest:
    input:
        get_machine_clips,
    output:
        RUN.manifest(),
    log:
        RUN.log("manifest", "{machine}.{part}"),
    conda:
        "../../envs/data.yaml"
    params:
        data_root=untracked(config["data_root"]),
        # a clip replaced with its modification time kept (rsync -a, cp -p) still reruns
        contents=clip_contents,
    shell:
        "eat-asd discover {params.data_root:q} --machine {wildcards.machine:q} --part {wildcards.part:q}"
        " --out {output:q} > {log:q} 2>&1"


rule features:
    input:
        rules.manifest.output,
    output:
        RUN.features(),
    log:
        RUN.log("features", "{machine}.{part}"),
    benchmark:
        RUN.benchmark("features", "{machine}.{part}")
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        mem_mb=4000,
    params:
        settings=as_json(feature_values(config)),
        data_root=untracked(config["data_root"]),
        batch=untracked(config["features"]["batch_size"]),
    shell:
        "eat-asd features --manifest {input:q} --data-root {params.data_root:q}"
        " --settings {params.settings:q} --batch-size {params.batch:q}"
        " --threads {threads} --out {output:q} > {log:q} 2>&1"
