import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("EAT_ASD_REFERENCE", REPO.parent / "shared" / "reference"))


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
