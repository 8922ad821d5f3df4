# ONE shared encoder, fine-tuned on the training normals of every training machine type.
# It reruns when its training data (train-part features and manifests of TRAIN_MACHINES) or its
# settings (encoder, encoder_revision, features, finetune, lora, train, embedding.pooling) change.
# With train.noise_mix it also reads the train part's audio (clips and noise recordings) itself.
# Test clips, score-only machine types and the other embedding/scoring settings never retrain it.


rule train_encoder:
    input:
        features=expand(
            f"{R}/features/{{machine}}.train.safetensors", machine=TRAIN_MACHINES
        ),
        manifests=expand(f"{R}/manifests/{{machine}}.train.csv", machine=TRAIN_MACHINES),
        pretrained=pretrained_encoder_files(),
        audio=noise_mix_audio(),
    output:
        config=f"{ENCODER_OUT}/config.json",
        weights=f"{ENCODER_OUT}/model.safetensors",
        modeling=f"{ENCODER_OUT}/modeling_eat.py",
        summary=f"{R}/encoder/summary.json",
        log_csv=f"{R}/encoder/train_log.csv",
    log:
        f"{R}/logs/train_encoder.log",
    benchmark:
        f"{R}/benchmarks/train_encoder.tsv"
    conda:
        "../../envs/torch.yaml"
    # cores reserved for the job (profiles set it, --cores caps it); torch's thread count is not taken from it,
    # since the weights depend on it: every CPU of the machine, or EAT_ASD_TRAIN_THREADS (see the README)
    threads: 8
    resources:
        mem_mb=8000,
    params:
        # a local pre-trained encoder is an input (its changes retrain); a Hub id is passed as is
        encoder=lambda wc, input: (
            os.path.dirname(input.pretrained[0])
            if input.pretrained
            else config["encoder"]
        ),
        revision=config["encoder_revision"] or "",  # empty: main
        settings=as_json(train_values(config)),
        features=as_json(feature_values(config)),
        out=lambda wc, output: os.path.dirname(output.summary),
        data_root=untracked(config["data_root"]),
    shell:
        "eat-asd train --encoder {params.encoder:q} --encoder-revision={params.revision:q}"
        " --features {input.features:q} --data-root {params.data_root:q}"
        " --manifests {input.manifests:q} --settings {params.settings:q}"
        " --feature-settings {params.features:q}"
        " --out {params.out:q} > {log:q} 2>&1"
