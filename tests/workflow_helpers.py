"""Running the workflow in tests: the Snakemake command line on a small demo in a temporary folder."""

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
MACHINES = ["fan", "gearbox", "pump"]
SMALL_DEMO = {
    "data_root": "demo/data",
    "encoder": "demo/encoder",
    "results": "results",
    # stereo, as DCASE 2026, each channel a view: the one end-to-end run covers the multi-view path
    "demo": {"seed": 0, "seconds": 1.0, "train_source": 8, "train_target": 3, "test_per_cell": 4, "channels": 2},
    "features": {"target_frames": 112, "channels": "each"},
    "train": {"epochs": 3, "lr": 0.003, "loss": "arcface"},
}


def snakemake_command(workdir, *args, config_file="config.yaml", snakefile=REPO / "Snakefile") -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--directory", str(workdir),
            "--configfile", str(Path(workdir) / config_file), *args]


def venv_env(path_first=None) -> dict:
    """The environment jobs run in: this venv's bin (or `path_first`) first on PATH."""
    first = path_first or Path(sys.executable).parent
    return {**os.environ, "PATH": f"{first}:{os.environ['PATH']}"}


def snakemake(workdir, *args, config_file="config.yaml", check=True, snakefile=REPO / "Snakefile", env=None):
    cmd = snakemake_command(workdir, *args, config_file=config_file, snakefile=snakefile)
    out = subprocess.run(cmd, env=env or venv_env(), capture_output=True, text=True, timeout=1200)
    if check and out.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-6000:]}")
    return out


def planned_jobs(output: str) -> dict[str, int]:
    """rule -> job count from a dry run's job stats table."""
    stats = output.split("Job stats:")[1].split("total")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", stats, re.M)}


def planned_wildcards(output: str) -> set[str]:
    return set(re.findall(r"wildcards: (.*)", output))


def write_config(workdir, name="config.yaml", **changes):
    config = yaml.safe_load(yaml.safe_dump(SMALL_DEMO))
    for key, value in changes.items():
        config[key] = value
    (workdir / name).write_text(yaml.safe_dump(config))
