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
from eat_asd.groundtruth import ground_truth_files
from eat_asd.io import discard_damaged_files
from eat_asd.layout import (
    ANOMALY_SCORE,
    CONFIG_FILE,
    DECISION_RESULT,
    PLOT_KINDS,
    SUBMISSION_KINDS,
    WEIGHTS_FILE,
    Run,
)
from eat_asd.plan import plan_workflow

R = config["results"]
RUN = Run(R)  # every output path (eat_asd.layout)


def dry_run_requested():
    """-n (--dry-run) on Snakemake's command line. workflow.dryrun is not set yet while the Snakefile is
    read, so the command line is parsed as Snakemake parses it (-pn and -np included).
    """
    from snakemake.cli import get_argument_parser

    try:
        return bool(get_argument_parser().parse_known_args(sys.argv[1:])[0].dryrun)
    except (Exception, SystemExit):
        return False


try:
    # a dry run hashes the clips it must, and writes no cache
    PLAN = plan_workflow(
        config, hash_cache=RUN.clip_hashes, save_hash_cache=not dry_run_requested()
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
    [RUN.features(m, p) for m in MACHINES for p in PARTS]
    + [RUN.embeddings(m) for m in MACHINES]
):
    print(f"eat-asd: {line}", file=sys.stderr)
TRAIN_MACHINES = [m for m, p in PLAN.items() if p.trains_encoder]
ENCODER_IS_LOCAL = config["demo"] or Path(config["encoder"]).is_dir()
# The command that started the run, for the model card; jobs inherit it from this process.
os.environ.setdefault("EAT_ASD_COMMAND", shlex.join(["snakemake", *sys.argv[1:]]))


wildcard_constraints:
    machine="|".join(MACHINES) if MACHINES else "NONE",
    section=r"\d+",
    part="|".join(PARTS),


def submission_files(machine):
    return [
        RUN.submission(kind, machine, section)
        for section in PLAN[machine].test_sections
        for kind in SUBMISSION_KINDS
    ]


def get_pretrained_encoder_files():
    """A local pre-trained encoder is an input (its changes retrain); a Hub id is none."""
    if not ENCODER_IS_LOCAL:
        return []
    return [f"{config['encoder']}/{name}" for name in (CONFIG_FILE, WEIGHTS_FILE)]


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
def get_ground_truth(wildcards):
    if not config["ground_truth"]:
        return []
    return ground_truth_files(config["ground_truth"], wildcards.machine)


def bank_machines(wildcards):
    """With scoring.bank_split = all, a machine type's score job also reads every other machine type's
    embeddings and training manifest: the memory bank holds all training clips."""
    if machine_settings(config, wildcards.machine, "scoring")["bank_split"] != "all":
        return []
    return [m for m in MACHINES if m != wildcards.machine]


def get_bank_embeddings(wildcards):
    return [RUN.embeddings(m) for m in bank_machines(wildcards)]


def get_bank_manifests(wildcards):
    return [RUN.manifest(m, "train") for m in bank_machines(wildcards)]


def get_machine_clips(wildcards):
    """The demo's clips of a machine type and part, made by make_demo: the manifest's inputs. Real data's
    clips are none (see data.smk)."""
    return PLAN[wildcards.machine].files(wildcards.part) if config["demo"] else []


def noise_mix_audio(noise_mix):
    """With train.noise_mix, a training job reads the training clips' and the noise recordings'
    waveforms (the mix happens before the fbank): they are its inputs too."""
    if not noise_mix["prob"]:
        return []
    return [f for m in TRAIN_MACHINES for f in PLAN[m].train_files]


def get_noise_mix_audio(wildcards):
    return noise_mix_audio(config["train"]["noise_mix"])


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

    feature_files = [RUN.features(m, p) for m in MACHINES for p in PARTS]
    for line in changed_summaries([f for f in feature_files if os.path.exists(f)]):
        print(f"eat-asd: features changed the clips of {line}")
    # the last lines of the run: where to look
    print(f"eat-asd: report: {os.path.abspath(RUN.report)}")
    print(f"eat-asd: result table: {os.path.abspath(RUN.tables.dcase[1])}")


def table_outputs(tables):
    """The aggregate rule's outputs: every table of `tables`, its CSVs shown in Snakemake's report."""
    outputs = tables.outputs()
    for name, stem in tables.STEMS.items():
        outputs[name] = report(
            outputs[name], caption=f"../report/{stem}.rst", category="Tables"
        )
    return outputs


ALL_OUTPUTS = [f for m in MACHINES for f in submission_files(m)] + [
    RUN.tables.outputs()["auroc"],
    RUN.tables.outputs()["dcase"],
    RUN.report,
    RUN.training.model_card,
]
