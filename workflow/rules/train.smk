# ONE shared encoder, fine-tuned on the training normals of every training machine type.
# It reruns when its training data (train-part features and manifests of TRAIN_MACHINES) or its
# settings (encoder, encoder_revision, features, finetune, lora, train, embedding.pooling) change.
# With train.noise_mix it also reads the train part's audio (clips and noise recordings) itself.
# Test clips, score-only machine types and the other embedding/scoring settings never retrain it.


rule train_encoder:
    input:
        features=[RUN.features(m, "train") for m in TRAIN_MACHINES],
        manifests=[RUN.manifest(m, "train") for m in TRAIN_MACHINES],
        pretrained=get_pretrained_encoder_files(),
        audio=get_noise_mix_audio,
    output:
        # not protected(): Snakemake would then refuse the retraining a changed setting asks for
        config=RUN.training.encoder_config,
        weights=RUN.training.encoder_weights,
        modeling=RUN.training.encoder_modeling,
        summary=RUN.training.summary,
        log_csv=RUN.training.log,
    log:
        RUN.log("train_encoder"),
    benchmark:
        RUN.benchmark("train_encoder")
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
