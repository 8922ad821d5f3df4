# Shared helpers: the job plan, output paths and the per-machine settings passed as params.
import os
import shlex
import sys
from pathlib import Path

from eat_asd.config import as_json, feature_values, machine_section, train_values
from eat_asd.data import DataError
from eat_asd.plan import plan_workflow

try:
    PLAN = plan_workflow(config)
except (DataError, ValueError) as err:
    raise WorkflowError(str(err)) from None

R = config["results"]
STAGE = f"python {workflow.basedir}/scripts/eat_asd_stage.py"
MACHINES = list(PLAN)
PARTS = ["train", "test"]
TRAIN_MACHINES = [m for m, p in PLAN.items() if p.trains_encoder]
ENCODER_IS_LOCAL = config["demo"] or Path(config["encoder"]).is_dir()
ENCODER_OUT = f"{R}/encoder/encoder"
# The command that started the run, for the model card; jobs inherit it from this process.
os.environ.setdefault("EAT_ASD_COMMAND", shlex.join(["snakemake", *sys.argv[1:]]))


wildcard_constraints:
    machine="|".join(MACHINES) if MACHINES else "NONE",
    section=r"\d+",
    part="train|test",


def submission_files(machine):
    return [
        f"{R}/submission/{kind}_{machine}_section_{section}_test.csv"
        for section in PLAN[machine].test_sections
        for kind in ("anomaly_score", "decision_result")
    ]


def pretrained_encoder_files():
    return [f"{config['encoder']}/config.json", f"{config['encoder']}/model.safetensors"] if ENCODER_IS_LOCAL else []


# Params computed from wildcards alone, so Snakemake reruns exactly the machine whose settings changed.
def embedding_params(wildcards):
    return as_json(machine_section(config, wildcards.machine, "embedding"))


def scoring_params(wildcards):
    return as_json(machine_section(config, wildcards.machine, "scoring"))


def other_banks(wildcards, kind):
    """With scoring.bank_split = all, a machine type's score job also reads every other machine type's
    embeddings and training manifest: the memory bank holds all training clips."""
    if machine_section(config, wildcards.machine, "scoring")["bank_split"] != "all":
        return []
    others = [m for m in MACHINES if m != wildcards.machine]
    if kind == "embeddings":
        return [f"{R}/embeddings/{m}.npz" for m in others]
    return [f"{R}/manifests/{m}.train.csv" for m in others]


ALL_OUTPUTS = [f for m in MACHINES for f in submission_files(m)] + [
    f"{R}/tables/auroc.csv",
    f"{R}/tables/dcase_metrics.csv",
    f"{R}/report.html",
    f"{ENCODER_OUT}/README.md",
]
