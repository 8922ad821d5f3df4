# Shared helpers: the job plan, output paths and the per-machine settings passed as params.
import os
import shlex
import sys
from pathlib import Path

from eat_asd.config import (
    as_json,
    feature_values,
    machine_settings,
    result_settings,
    train_values,
)
from eat_asd.data import PARTS
from eat_asd.groundtruth import check_covers, ground_truth_files
from eat_asd.io import discard_damaged_files
from eat_asd.plan import plan_workflow

R = config["results"]

try:
    PLAN = plan_workflow(config, hash_cache=f"{R}/.clip-hashes.json")
    if config["ground_truth"]:
        check_covers(
            config["ground_truth"], {m: p.test_sections for m, p in PLAN.items()}
        )
except EatAsdError as err:
    hint = ""
    if "--conda-create-envs-only" in sys.argv:
        hint = (
            "\nCreating the conda envs needs no data: add --configfile config/demo.yaml"
        )
    raise WorkflowError(str(err) + hint) from None

MACHINES = list(PLAN)
# Feature files and embeddings an earlier run left damaged (cut short, corrupt) are removed, so this run remakes them.
for line in discard_damaged_files(
    [f"{R}/features/{m}.{p}.safetensors" for m in MACHINES for p in PARTS]
    + [f"{R}/embeddings/{m}.npz" for m in MACHINES]
):
    print(f"eat-asd: {line}", file=sys.stderr)
TRAIN_MACHINES = [m for m, p in PLAN.items() if p.trains_encoder]
ENCODER_IS_LOCAL = config["demo"] or Path(config["encoder"]).is_dir()
ENCODER_OUT = f"{R}/encoder/encoder"
# The command that started the run, for the model card; jobs inherit it from this process.
os.environ.setdefault("EAT_ASD_COMMAND", shlex.join(["snakemake", *sys.argv[1:]]))


wildcard_constraints:
    machine="|".join(MACHINES) if MACHINES else "NONE",
    section=r"\d+",
    part="|".join(PARTS),


def submission_files(machine):
    return [
        f"{R}/submission/{kind}_{machine}_section_{section}_test.csv"
        for section in PLAN[machine].test_sections
        for kind in ("anomaly_score", "decision_result")
    ]


def pretrained_encoder_files():
    if not ENCODER_IS_LOCAL:
        return []
    return [
        f"{config['encoder']}/config.json",
        f"{config['encoder']}/model.safetensors",
    ]


def untracked(value):
    """A param Snakemake does not record: it skips params computed from a job's resources, taking their
    changes to show in the resources. For what only says where the clips lie or how many a job handles
    at once (data_root, the batch sizes): a moved data set or another batch size reruns nothing.
    """
    return lambda wildcards, resources: value(wildcards) if callable(value) else value


# Params computed from wildcards alone, so Snakemake reruns exactly the machine whose settings changed.
def clip_contents(wildcards):
    return PLAN[wildcards.machine].content.get(wildcards.part, "")


def embedding_settings(wildcards):
    return machine_settings(config, wildcards.machine, "embedding")


def embedding_params(wildcards):
    """What changes the embeddings: every embedding setting but the batch size (passed untracked)."""
    return as_json(result_settings(embedding_settings(wildcards)))


def scoring_params(wildcards):
    return as_json(machine_settings(config, wildcards.machine, "scoring"))


# Labels of evaluation clips from the official ground truth: a machine's score job reads only its own files.
def ground_truth_inputs(wildcards):
    if not config["ground_truth"]:
        return []
    return ground_truth_files(config["ground_truth"], wildcards.machine)


def other_banks(wildcards, kind):
    """With scoring.bank_split = all, a machine type's score job also reads every other machine type's
    embeddings and training manifest: the memory bank holds all training clips."""
    if machine_settings(config, wildcards.machine, "scoring")["bank_split"] != "all":
        return []
    others = [m for m in MACHINES if m != wildcards.machine]
    if kind == "embeddings":
        return [f"{R}/embeddings/{m}.npz" for m in others]
    return [f"{R}/manifests/{m}.train.csv" for m in others]


def noise_mix_audio():
    """With train.noise_mix, the training job reads the training clips' and the noise recordings'
    waveforms (the mix happens before the fbank): they are its inputs too."""
    if not config["train"]["noise_mix"]["prob"]:
        return []
    return [f for m in TRAIN_MACHINES for f in PLAN[m].train_files]


def results_lock(log):
    """Hold a lock on the results folder while this run lasts (the OS drops it when the process ends)."""
    from eat_asd.lock import lock_results

    try:
        lock_results(R)
    except EatAsdError as err:
        raise WorkflowError(str(err)) from None


onstart:
    results_lock(log)


onsuccess:
    # what the features changed about the clips, on the terminal as well as in the report
    from eat_asd.audio_notes import changed_summaries

    feature_files = [
        f"{R}/features/{m}.{p}.safetensors" for m in MACHINES for p in PARTS
    ]
    for line in changed_summaries([f for f in feature_files if os.path.exists(f)]):
        print(f"eat-asd: features changed the clips of {line}")
    # the last lines of the run: where to look
    print(f"eat-asd: report: {os.path.abspath(f'{R}/report.html')}")
    print(
        f"eat-asd: result table: {os.path.abspath(f'{R}/tables/dcase_metrics.md')}"
    )


ALL_OUTPUTS = [f for m in MACHINES for f in submission_files(m)] + [
    f"{R}/tables/auroc.csv",
    f"{R}/tables/dcase_metrics.csv",
    f"{R}/report.html",
    f"{ENCODER_OUT}/README.md",
]
