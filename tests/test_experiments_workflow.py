"""The experiments grid through Snakemake: shared jobs, what a new variant or seed runs, the comparison."""

import shutil

import pandas as pd
import pytest
import yaml

from workflow_helpers import MACHINES, planned_jobs, snakemake, write_config

pytestmark = pytest.mark.slow

GRID = {"seeds": [0, 1], "reference": "base", "bootstrap": 100,
        "variants": {"base": {}, "k2": {"scoring": {"k": 2}}, "fused": {"fuse": ["base", "k2"]}}}


@pytest.fixture(scope="module")
def grid_run(demo_run, tmp_path_factory):
    """The small demo's grid, in a copy of the demo run (whose manifests and features it reuses)."""
    workdir = tmp_path_factory.mktemp("grid") / "wd"
    shutil.copytree(demo_run[0], workdir, symlinks=True)
    write_config(workdir, "grid.yaml", experiments=GRID)
    dry = snakemake(workdir, "-n", config_file="grid.yaml")
    snakemake(workdir, "--cores", "2", config_file="grid.yaml")
    return workdir, planned_jobs(dry.stdout)


def test_the_grid_trains_once_per_seed_and_reuses_the_features(grid_run):
    _, jobs = grid_run
    assert jobs["exp_train_encoder"] == 2  # base and k2 differ in scoring only: one training per seed
    assert jobs["exp_embed"] == 2 * len(MACHINES)
    assert jobs["exp_score"] == 2 * 2 * len(MACHINES) and jobs["exp_fuse"] == 2 * len(MACHINES)
    assert "features" not in jobs and "exp_features" not in jobs and "manifest" not in jobs


def test_the_comparison_table_plot_and_page(grid_run):
    workdir, _ = grid_run
    x = workdir / "results" / "experiments"
    table = pd.read_csv(x / "comparison.csv")
    order = list(yaml.safe_load((workdir / "grid.yaml").read_text())["experiments"]["variants"])
    assert table["variant"].unique().tolist() == order  # the config's order of variants
    assert set(table["machine_type"]) == {"all", *MACHINES}
    base = table[table["variant"] == "base"]
    assert (base[["diff", "diff_low", "diff_high"]] == 0).all().all()
    assert (table["seeds"] == 2).all() and (table["ci_low"] <= table["ci_high"]).all()
    for v in ("base", "k2", "fused"):
        for s in (0, 1):
            summary = pd.read_csv(x / "runs" / v / f"seed_{s}" / "tables" / "dcase_summary.csv")
            assert len(summary)
    assert (x / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    page = (x / "report.html").read_text()
    assert "data:image/png;base64," in page and "href='runs/k2/seed_1/tables/dcase_metrics.md'" in page


def test_unchanged_grid_reruns_nothing_and_lints_clean(grid_run):
    workdir, _ = grid_run
    out = snakemake(workdir, "-n", config_file="grid.yaml")
    assert "Nothing to be done" in out.stdout + out.stderr
    lint = snakemake(workdir, "--lint", config_file="grid.yaml")
    assert "Congratulations, your workflow is in a good condition!" in lint.stdout + lint.stderr


def test_a_scoring_only_variant_runs_no_training_and_no_embedding(grid_run):
    workdir, _ = grid_run
    grid = dict(GRID, variants={**GRID["variants"], "k3": {"scoring": {"k": 3}}})
    write_config(workdir, "more.yaml", experiments=grid)
    jobs = planned_jobs(snakemake(workdir, "-n", config_file="more.yaml").stdout)
    assert jobs == {"exp_score": 2 * len(MACHINES), "exp_aggregate": 2, "exp_compare": 1, "all": 1}


def test_a_new_seed_runs_only_that_seeds_jobs(grid_run):
    workdir, _ = grid_run
    write_config(workdir, "seed.yaml", experiments=dict(GRID, seeds=[0, 1, 2]))
    jobs = planned_jobs(snakemake(workdir, "-n", config_file="seed.yaml").stdout)
    assert jobs == {"exp_train_encoder": 1, "exp_embed": len(MACHINES), "exp_score": 2 * len(MACHINES),
                    "exp_fuse": len(MACHINES), "exp_aggregate": 3, "exp_compare": 1, "all": 1}
