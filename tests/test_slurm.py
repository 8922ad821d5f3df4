"""The demo workflow through `--profile slurm` on a real single-node SLURM cluster started by the test."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from workflow_helpers import MACHINES, REPO, planned_jobs, snakemake, write_config

CLUSTER = REPO / "tests" / "slurm" / "local_cluster.sh"
pytestmark = pytest.mark.slurm


def _unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"SLURM is required in CI but cannot start here: {reason}")
    pytest.skip(f"SLURM cannot start here: {reason}")


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        _unavailable("the local cluster needs root (it starts slurmctld, slurmd and munged)")
    if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        _unavailable("neither slurm-wlm nor apt-get is installed")
    up = subprocess.run(["bash", str(CLUSTER), "up"], capture_output=True, text=True, timeout=600)
    if up.returncode != 0:
        _unavailable(up.stderr[-2000:])
    try:
        yield
    finally:
        subprocess.run(["bash", str(CLUSTER), "down"], capture_output=True, text=True, timeout=120)
        assert subprocess.run(["pgrep", "-x", "slurmctld|slurmd|munged"], capture_output=True).returncode == 1
        # no config of the stopped cluster is left for scontrol to wait on
        conf = Path("/etc/slurm/slurm.conf")
        assert not conf.exists() or "ClusterName=eatasd" not in conf.read_text(errors="replace")


def test_demo_through_slurm_profile_equals_local_run(cluster, demo_run, tmp_path):
    # the local run of the same config: the session's demo run (read only)
    local, cluster_dir = demo_run[0], tmp_path / "slurm"
    cluster_dir.mkdir()
    write_config(cluster_dir)

    # The profile as shipped, with what this CPU-only test cluster needs on top: no GPU for training,
    # threads and memory that fit the node, quick status checks.
    dry = snakemake(cluster_dir, "-n", "--profile", str(REPO / "slurm"))
    jobs = planned_jobs(dry.stdout)
    t0 = time.time()
    cluster_options = ["--set-resources", "train_encoder:gpu=0", "train_encoder:cpus_per_task=2", "train_encoder:mem_mb=4000",
                       "features:mem_mb=2000", "embed:mem_mb=2000", "score:mem_mb=2000",
                       "exp_train_encoder:gpu=0", "exp_train_encoder:cpus_per_task=2", "exp_train_encoder:mem_mb=4000",
                       "--set-threads", "train_encoder=2", "exp_train_encoder=2",
                       "--default-resources", "mem_mb=2000", "cpus_per_task=1", "runtime=30",
                       "--slurm-init-seconds-before-status-checks", "2"]
    run = snakemake(cluster_dir, "--profile", str(REPO / "slurm"), "--jobs", "4", *cluster_options,
                    "--slurm-logdir", str(cluster_dir / "slurm_logs"), "--slurm-keep-successful-logs")
    slurm_seconds = time.time() - t0
    text = run.stdout + run.stderr
    print(f"SLURM run {slurm_seconds:.0f} s")

    # one sbatch per group (per machine type: data prep, scoring; the summary) and per ungrouped job;
    # the local rules (submission, model_card, all) run on the submit host
    groups = {"prep": len(MACHINES), "score": len(MACHINES), "summary": 1}
    ungrouped = {"make_demo": 1, "train_encoder": 1}
    logs = list((cluster_dir / "slurm_logs").rglob("*.log"))
    kinds = {}
    for log in logs:
        top = log.relative_to(cluster_dir / "slurm_logs").parts[0]
        kind = top[len("rule_"):] if top.startswith("rule_") else top[len("group_"):].split("_")[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    assert kinds == {**groups, **ungrouped}, (kinds, text[-3000:])
    sbatch_calls = text.count("has been submitted with SLURM jobid")
    assert sbatch_calls == sum(groups.values()) + sum(ungrouped.values()) == 9
    assert sum(n for rule, n in jobs.items() if rule not in ("submission", "model_card", "all")) == 22  # jobs before grouping
    print(f"sbatch calls: {sbatch_calls} for {sum(jobs.values())} jobs")

    # same config, same results
    for m in ("fan", "gearbox", "pump"):
        a = pd.read_csv(local / "results" / "scores" / f"{m}.csv")
        b = pd.read_csv(cluster_dir / "results" / "scores" / f"{m}.csv")
        assert a["filename"].tolist() == b["filename"].tolist()
        assert (a["score"] - b["score"]).abs().max() < 1e-6 and a["decision"].tolist() == b["decision"].tolist()
    assert pd.read_csv(local / "results" / "tables" / "auroc.csv").equals(pd.read_csv(cluster_dir / "results" / "tables" / "auroc.csv"))
    (tmp_path / "timing.txt").write_text(f"slurm {slurm_seconds:.1f} s\n")

    # an experiments grid through SLURM (a scoring-only variant beside the base): its base run at the demo's
    # seed trains and scores as the one-run workflow does, so its scores are the local run's
    grid = {"seeds": [0], "reference": "base", "bootstrap": 50, "variants": {"base": {}, "k2": {"scoring": {"k": 2}}}}
    write_config(cluster_dir, "grid.yaml", experiments=grid)
    snakemake(cluster_dir, "--profile", str(REPO / "slurm"), "--jobs", "4", *cluster_options, config_file="grid.yaml")
    comparison = pd.read_csv(cluster_dir / "results" / "experiments" / "comparison.csv")
    assert set(comparison["variant"]) == {"base", "k2"}
    runs = cluster_dir / "results" / "experiments" / "runs"
    for name in ("dcase_metrics.csv", "auroc.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(runs / "base" / "seed_0" / "tables" / name),
                                      pd.read_csv(local / "results" / "tables" / name), atol=1e-6)
