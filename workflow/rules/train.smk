# ONE shared encoder, fine-tuned on the training normals of every training machine type.
# It reruns when its training data (the features and manifests of TRAIN_MACHINES) or its
# settings (finetune, lora, train, features, encoder) change; score-only machine types and
# embedding/scoring settings never retrain it.


rule train_encoder:
    input:
        features=expand(f"{R}/features/{{machine}}.safetensors", machine=TRAIN_MACHINES),
        manifests=expand(f"{R}/manifests/{{machine}}.csv", machine=TRAIN_MACHINES),
        pretrained=pretrained_encoder_files(),
    output:
        config=f"{ENCODER_OUT}/config.json",
        weights=f"{ENCODER_OUT}/model.safetensors",
        summary=f"{R}/encoder/summary.json",
        log_csv=f"{R}/encoder/train_log.csv",
    params:
        encoder=config["encoder"],
        settings=as_json(train_values(config)),
        features=as_json(feature_values(config)),
        device=config["device"],
        out=f"{R}/encoder",
    threads: config["train"]["threads"]
    resources:
        mem_mb=8000,
    log:
        f"{R}/logs/train_encoder.log",
    benchmark:
        f"{R}/benchmarks/train_encoder.tsv"
    conda:
        "../../envs/torch.yaml"
    shell:
        "{STAGE} train --encoder {params.encoder:q} --features {input.features} --manifests {input.manifests}"
        " --settings {params.settings:q} --feature-settings {params.features:q}"
        " --device {params.device} --threads {threads} --out {params.out} > {log} 2>&1"
