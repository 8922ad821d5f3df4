# Data: the demo (when configured), a manifest per machine type, cached features per machine type.


if config["demo"] is not None:

    rule make_demo:
        output:
            [p for plan in PLAN.values() for p in plan.files],
            f"{config['encoder']}/config.json",
            f"{config['encoder']}/model.safetensors",
        params:
            d=config["demo"],
            data_root=config["data_root"],
            encoder=config["encoder"],
        log:
            f"{R}/logs/make_demo.log",
        conda:
            "../../envs/torch.yaml"
        shell:
            "{STAGE} demo --data-root {params.data_root:q} --encoder {params.encoder:q}"
            " --seed {params.d[seed]} --seconds {params.d[seconds]} --train-source {params.d[train_source]}"
            " --train-target {params.d[train_target]} --test-per-cell {params.d[test_per_cell]} > {log} 2>&1"


rule manifest:
    input:
        lambda wc: PLAN[wc.machine].files,
    output:
        f"{R}/manifests/{{machine}}.csv",
    params:
        data_root=config["data_root"],
    log:
        f"{R}/logs/manifest/{{machine}}.log",
    conda:
        "../../envs/data.yaml"
    shell:
        "{STAGE} discover {params.data_root:q} --machine {wildcards.machine} --out {output} > {log} 2>&1"


rule features:
    input:
        f"{R}/manifests/{{machine}}.csv",
    output:
        f"{R}/features/{{machine}}.safetensors",
    params:
        settings=as_json(feature_values(config)),
        batch=config["features"]["batch_size"],
    threads: 2
    resources:
        mem_mb=4000,
    log:
        f"{R}/logs/features/{{machine}}.log",
    benchmark:
        f"{R}/benchmarks/features/{{machine}}.tsv"
    conda:
        "../../envs/torch.yaml"
    shell:
        "{STAGE} features --manifest {input} --settings {params.settings:q} --batch-size {params.batch}"
        " --threads {threads} --out {output} > {log} 2>&1"
