import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("EAT_ASD_REFERENCE", REPO.parent / "shared" / "reference"))


def pytest_collection_modifyitems(config, items):
    """The SLURM tests run last. The Snakemake SLURM plugin asks `scontrol show config` whenever it is
    imported, by every Snakemake process; while a SLURM config names a controller that does not answer,
    that waits ~9 s (the test cluster's teardown removes its config, but a failed teardown would not)."""
    items.sort(key=lambda item: item.get_closest_marker("slurm") is not None)  # a stable sort keeps the rest in order


def overlaid_config(*names: str) -> dict:
    """The config files config/<name> merged in order, the way Snakemake merges --configfile files."""
    import yaml
    from snakemake.utils import update_config

    config: dict = {}
    for name in names:
        update_config(config, yaml.safe_load((REPO / "config" / name).read_text()))
    return config


def env_pip(name: str) -> list[str]:
    """The pip requirements of envs/<name>.yaml, in order."""
    import yaml

    env = yaml.safe_load((REPO / "envs" / f"{name}.yaml").read_text())
    return next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))


@pytest.fixture(scope="session")
def reference() -> Path:
    if not REFERENCE.is_dir():
        pytest.fail(f"golden files not found at {REFERENCE} (set EAT_ASD_REFERENCE)")
    return REFERENCE


@pytest.fixture(scope="session")
def tiny_config():
    from eat_asd.eat import EATConfig

    return EATConfig(embed_dim=32, depth=2, num_heads=4, max_length=16)


@pytest.fixture
def tiny_model(tiny_config):
    import torch

    from eat_asd.eat import EAT

    torch.manual_seed(0)
    return EAT(tiny_config).eval()


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The small demo run once through Snakemake: (workdir, dry-run output, run result)."""
    from workflow_helpers import snakemake, write_config

    workdir = tmp_path_factory.mktemp("wf")
    write_config(workdir)
    dry = snakemake(workdir, "-n")
    run = snakemake(workdir, "--cores", "2")
    return workdir, dry.stdout + dry.stderr, run


def write_ground_truth(clips, out: Path, attributes_layout: str = "flat", seed: int = 0) -> dict[str, str]:
    """Ground-truth folders in the official evaluators' format for labelled clips (columns machine,
    section, filename, label, domain), under shuffled anonymised names section_XX_NNNN.wav.
    Returns {original file name: anonymised name}."""
    import numpy as np

    rng = np.random.default_rng(seed)
    names = {}
    for (machine, section), g in clips.groupby(["machine", "section"]):
        order = rng.permutation(len(g))
        rows = [(f"section_{section}_{i + 1:04d}.wav", g.iloc[j]) for i, j in enumerate(order)]
        stem = f"ground_truth_{machine}_section_{section}_test.csv"
        for folder, text in (
            ("ground_truth_data", "".join(f"{a},{int(r['label'] == 'anomaly')}\n" for a, r in rows)),
            ("ground_truth_domain", "".join(f"{a},{int(r['domain'] == 'target')}\n" for a, r in rows)),
        ):
            (out / folder).mkdir(parents=True, exist_ok=True)
            (out / folder / stem).write_text(text)
        mapping = "".join(f"{a},{Path(r['filename']).stem}\n" for a, r in rows)
        if attributes_layout == "flat":  # the evaluators' own layout: no header, original name without .wav
            path = out / "ground_truth_attributes" / stem
        else:
            path = out / "ground_truth_attributes" / machine / f"attributes_{section}.csv"
            mapping = "file_name,original_file_name\n" + mapping
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(mapping)
        names.update({r["filename"]: a for a, r in rows})
    return names


@pytest.fixture(scope="session")
def ground_truth_writer():
    return write_ground_truth
