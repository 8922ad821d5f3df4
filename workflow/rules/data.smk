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


rule manifest:
    input:
        lambda wc: PLAN[wc.machine].files(wc.part),
    output:
        f"{R}/manifests/{{machine}}.{{part}}.csv",
    log:
        f"{R}/logs/manifest/{{machine}}.{{part}}.log",
    conda:
        "../../envs/data.yaml"
    params:
        data_root=config["data_root"],
        # digest of the clips' contents: a clip replaced with its modification time kept still reruns
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
        batch=config["features"]["batch_size"],
    shell:
        "eat-asd features --manifest {input:q} --settings {params.settings:q} --batch-size {params.batch:q}"
        " --threads {threads} --out {output:q} > {log:q} 2>&1"
