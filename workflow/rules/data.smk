# Data: the demo (when configured), then per machine type and part (train | test) a manifest
# and its cached features. Train and test stay apart so that replacing test clips never
# retrains the shared encoder.


if config["demo"]:

    rule make_demo:
        output:
            [p for plan in PLAN.values() for part in PARTS for p in plan.files(part)],
            encoder_config=f"{config['encoder']}/config.json",
            encoder_weights=f"{config['encoder']}/model.safetensors",
        params:
            stage=STAGE,
            d=config["demo"],
            data_root=lambda wc, output: output[0].split("/dev_data/raw/")[0],
            encoder=lambda wc, output: os.path.dirname(output.encoder_config),
        log:
            f"{R}/logs/make_demo.log",
        conda:
            "../../envs/torch.yaml"
        shell:
            "{params.stage} demo --data-root {params.data_root:q} --encoder {params.encoder:q}"
            " --seed {params.d[seed]} --seconds {params.d[seconds]} --train-source {params.d[train_source]}"
            " --train-target {params.d[train_target]} --test-per-cell {params.d[test_per_cell]} > {log} 2>&1"


rule manifest:
    input:
        lambda wc: PLAN[wc.machine].files(wc.part),
    output:
        f"{R}/manifests/{{machine}}.{{part}}.csv",
    params:
        stage=STAGE,
        data_root=config["data_root"],
    log:
        f"{R}/logs/manifest/{{machine}}.{{part}}.log",
    conda:
        "../../envs/data.yaml"
    shell:
        "{params.stage} discover {params.data_root:q} --machine {wildcards.machine} --part {wildcards.part}"
        " --out {output} > {log} 2>&1"


rule features:
    input:
        f"{R}/manifests/{{machine}}.{{part}}.csv",
    output:
        f"{R}/features/{{machine}}.{{part}}.safetensors",
    params:
        stage=STAGE,
        settings=as_json(feature_values(config)),
        batch=config["features"]["batch_size"],
    threads: 2
    resources:
        mem_mb=4000,
    log:
        f"{R}/logs/features/{{machine}}.{{part}}.log",
    benchmark:
        f"{R}/benchmarks/features/{{machine}}.{{part}}.tsv"
    conda:
        "../../envs/torch.yaml"
    shell:
        "{params.stage} features --manifest {input} --settings {params.settings:q} --batch-size {params.batch}"
        " --threads {threads} --out {output} > {log} 2>&1"
