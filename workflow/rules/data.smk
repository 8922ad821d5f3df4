# Data: the demo (when configured), then per machine type and part (train | test) a manifest
# and its cached features. Train and test stay apart so that replacing test clips never
# retrains the shared encoder.


if config["demo"]:

    rule make_demo:
        output:
            [p for plan in PLAN.values() for part in PARTS for p in plan.files(part)],
            encoder_config=f"{config['encoder']}/config.json",
            encoder_weights=f"{config['encoder']}/model.safetensors",
        log:
            f"{R}/logs/make_demo.log",
        conda:
            "../../envs/torch.yaml"
        params:
            d=config["demo"],
            # the clips are <data_root>/dev_data/raw/<machine>/<part>/<name>.wav
            data_root=lambda wc, output: str(Path(output[0]).parents[4]),
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
        lambda wc: PLAN[wc.machine].files(wc.part) if config["demo"] else [],
    output:
        f"{R}/manifests/{{machine}}.{{part}}.csv",
    log:
        f"{R}/logs/manifest/{{machine}}.{{part}}.log",
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
        f"{R}/manifests/{{machine}}.{{part}}.csv",
    output:
        f"{R}/features/{{machine}}.{{part}}.safetensors",
    log:
        f"{R}/logs/features/{{machine}}.{{part}}.log",
    benchmark:
        f"{R}/benchmarks/features/{{machine}}.{{part}}.tsv"
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
