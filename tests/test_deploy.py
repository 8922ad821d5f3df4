"""The ways users deploy the workflow: per-job envs without torch, a killed run, a moved checkout,
paths with spaces and shell characters, use as a module, a results folder shared by two runs."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import env_pip
from workflow_helpers import (MACHINES, REPO, SMALL_DEMO, planned_jobs, snakemake, snakemake_command, venv_env,
                              write_config)

pytestmark = pytest.mark.slow
# the rules whose env is envs/data.yaml
LIGHT_RULES = {"manifest", "submission", "aggregate", "report", "model_card", "exp_fuse", "exp_aggregate", "exp_compare"}


def copy_workdir(src: Path, dst: Path) -> Path:
    """A copy that keeps modification times (as cp -a does)."""
    shutil.copytree(src, dst, symlinks=True)
    return dst


def scores_of(workdir: Path) -> dict[str, pd.DataFrame]:
    return {m: pd.read_csv(workdir / "results" / "scores" / f"{m}.csv") for m in MACHINES}


def assert_same_scores(a: dict, b: dict) -> None:
    for m in MACHINES:
        assert a[m]["filename"].tolist() == b[m]["filename"].tolist()
        assert (a[m]["score"] - b[m]["score"]).abs().max() < 1e-6, m
        assert a[m]["decision"].tolist() == b[m]["decision"].tolist()


def rules_run(out) -> set[str]:
    return {line.split()[1].rstrip(":") for line in (out.stdout + out.stderr).splitlines()
            if line.startswith(("rule ", "localrule "))}


def test_light_rules_use_the_data_env():
    defined = {}
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = path.read_text()
        for block in re.split(r"^(?=rule |use rule )", text, flags=re.M)[1:]:
            if block.startswith("use rule "):  # `use rule X as Y with:` keeps X's env: Y must be as light as X
                base, name = re.match(r"use rule (\w+) as (\w+)", block).groups()
                assert (base in LIGHT_RULES) == (name in LIGHT_RULES), f"rule {name} runs in the env of {base}"
                continue
            rule = block.split()[1].rstrip(":")
            env = "data.yaml" if rule in LIGHT_RULES else "torch.yaml"
            assert f'"../../envs/{env}"' in block, f"rule {rule} should run in envs/{env}"
            defined[rule] = env
    assert LIGHT_RULES - {"exp_aggregate"} <= set(defined)


def test_light_commands_never_import_torch(tmp_path):
    """With torch unimportable (as in the data env), the light subcommands still start and run."""
    # a finder that refuses torch (sys.modules["torch"] = None would also break scipy, which looks there)
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'torchaudio'):\n"
        "            raise ImportError(f'import of {name} halted')\n"
        "sys.meta_path.insert(0, NoTorch())\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    check = ("import eat_asd.cli, eat_asd.stages, eat_asd.plan, eat_asd.metrics, eat_asd.report, eat_asd.config, "
             "eat_asd.experiments, eat_asd.compare, eat_asd.fusion, eat_asd.threshold")
    out = subprocess.run([sys.executable, "-c", check + "; import torch"], env=env, capture_output=True, text=True)
    assert "import of torch halted" in out.stderr  # the block works, and nothing before it needed torch
    data = tmp_path / "data" / "dev_data" / "train" / "fan"
    data.mkdir(parents=True)
    import numpy as np
    import soundfile as sf
    sf.write(data / "normal_0000.wav", np.zeros(1600, dtype=np.float32), 16000)
    out = subprocess.run([sys.executable, "-m", "eat_asd", "discover", str(tmp_path / "data"), "--out", str(tmp_path / "m.csv")],
                         env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert pd.read_csv(tmp_path / "m.csv")["machine"].tolist() == ["fan"]


def test_light_jobs_run_in_a_venv_built_from_the_data_env_alone(demo_run, tmp_path):
    """The closest check of --use-conda here: the pip list of envs/data.yaml, nothing else, runs the light jobs."""
    workdir, _, _ = demo_run
    venv = tmp_path / "data env"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    packages = [os.path.expandvars(p.replace("${EAT_ASD_SOURCE}", str(REPO))) for p in env_pip("data")]
    args = [a for p in packages for a in (p.split(" ", 1) if p.startswith("-e ") else [p])]
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *args], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr[-3000:]
    assert subprocess.run([str(venv / "bin" / "python"), "-c", "import torch"], capture_output=True).returncode != 0

    work = copy_workdir(workdir, tmp_path / "work")
    before = scores_of(work)
    expected_tables = (work / "results" / "tables" / "auroc.csv").read_text()
    for path in ("tables", "submission", "report.html", "encoder/encoder/README.md"):
        target = work / "results" / path
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    ran = rules_run(snakemake(work, "--cores", "2", env=venv_env(venv / "bin")))
    assert ran and ran <= LIGHT_RULES | {"all"}, ran
    assert (work / "results" / "tables" / "auroc.csv").read_text() == expected_tables
    assert (work / "results" / "report.html").is_file()
    assert_same_scores(before, scores_of(work))
    # the manifest job: its command in the light env gives the workflow's manifest
    for machine in MACHINES:
        out = tmp_path / f"{machine}.test.csv"
        subprocess.run([str(venv / "bin" / "eat-asd"), "discover", "demo/data", "--machine", machine, "--part", "test",
                        "--out", str(out)], cwd=work, check=True, capture_output=True)
        assert out.read_text() == (work / "results" / "manifests" / f"{machine}.test.csv").read_text()


def test_moved_checkout_with_spaces_has_nothing_to_do(demo_run, tmp_path):
    """Clone the checkout elsewhere (a path with a space) and copy the results: the dry run is empty."""
    workdir, _, _ = demo_run
    clone = tmp_path / "moved checkout" / "eat asd"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    for path in ("Snakefile", "workflow", "profiles"):  # the working tree's rules, committed or not
        shutil.rmtree(clone / path) if (clone / path).is_dir() else (clone / path).unlink()
        (shutil.copytree if (REPO / path).is_dir() else shutil.copy2)(REPO / path, clone / path)
    work = copy_workdir(workdir, tmp_path / "moved work dir")
    out = snakemake(work, "-n", snakefile=clone / "Snakefile")
    assert "Nothing to be done" in out.stdout + out.stderr, out.stdout[-3000:]


def test_kill_9_during_training_then_a_plain_rerun_completes_with_the_same_scores(demo_run, tmp_path):
    workdir, _, _ = demo_run
    killed, reference = copy_workdir(workdir, tmp_path / "killed"), copy_workdir(workdir, tmp_path / "reference")
    for work in (killed, reference):  # a training setting changes: the encoder and all after it rerun
        write_config(work, train={**SMALL_DEMO["train"], "epochs": 4})
    snakemake(reference, "--cores", "2")

    log = killed / "results" / "logs" / "train_encoder.log"
    started = time.time()
    proc = subprocess.Popen(snakemake_command(killed, "--cores", "2"), env=venv_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while "epoch 2/4" not in (log.read_text(errors="replace") if log.is_file() and log.stat().st_mtime >= started else ""):
            assert proc.poll() is None, "the run ended before training got going"
            assert time.time() - started < 600
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    snakemake(killed, "--unlock")
    rerun = snakemake(killed, "--cores", "2")
    assert "Using workflow specific profile" in rerun.stdout + rerun.stderr  # profiles/default applies by itself
    assert_same_scores(scores_of(reference), scores_of(killed))


def git_source(repo: Path) -> tuple[Path, str]:
    """A git repository at `repo` holding the working tree (its workflow and config files, committed or
    not) at a commit of this test's making, tagged: what a module's git source or snakedeploy fetches.
    The workflow files are then removed from its work tree, so that they come from the commit alone.
    Returns (repository, tag)."""
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(repo)], check=True)
    for path in ("Snakefile", "workflow", "config", "envs", "profiles", "LICENSE", ".gitignore"):
        shutil.rmtree(repo / path) if (repo / path).is_dir() else (repo / path).unlink(missing_ok=True)
        (shutil.copytree if (REPO / path).is_dir() else shutil.copy2)(REPO / path, repo / path)
    git = ["git", "-C", str(repo), "-c", "user.name=test", "-c", "user.email=test@example.org"]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "--quiet", "--allow-empty", "-m", "the working tree"], check=True)
    subprocess.run([*git, "tag", "v-test"], check=True)
    shutil.rmtree(repo / "workflow")
    (repo / "Snakefile").unlink()
    return repo, "v-test"


def test_module_from_a_git_source_in_a_path_with_spaces_and_shell_characters(demo_run, tmp_path):
    """Another workflow imports this one as a module from a git source at the catalog's path
    (workflow/Snakefile, as github(...) would fetch it); its results folder name holds a space and $(...).
    The run warns of no localrules, and its Snakemake report builds. Before, the includes resolved to
    /workflow/rules/... in the repository (no such file), localrules named rules absent under the
    prefix, and the report stopped at 'dict object' has no attribute 'scoring'."""
    workdir, _, _ = demo_run
    repo, tag = git_source(tmp_path / "origin")
    project = tmp_path / "my project"
    project.mkdir()
    write_config(project, results="out dir $(touch PWNED)")
    (project / "Snakefile").write_text(f'''
configfile: "config.yaml"


module eat_asd:
    snakefile:
        gitfile({str(repo)!r}, path="workflow/Snakefile", tag={tag!r})
    config:
        config


use rule * from eat_asd as eat_asd_*
''')
    run = snakemake(project, "--cores", "2", snakefile=project / "Snakefile")
    assert "localrules" not in run.stdout + run.stderr
    assert "eat_asd_train_encoder" in rules_run(run)
    assert not list(tmp_path.rglob("PWNED")) and not Path("PWNED").exists()
    results = project / "out dir $(touch PWNED)"
    for m in MACHINES:
        a = pd.read_csv(workdir / "results" / "scores" / f"{m}.csv")
        b = pd.read_csv(results / "scores" / f"{m}.csv")
        assert (a["score"] - b["score"]).abs().max() < 1e-6
    assert (results / "report.html").is_file()
    snakemake(project, "--report", "snakemake report.html", snakefile=project / "Snakefile")
    page = (project / "snakemake report.html").read_text()
    assert "Anomalous machine sound detection" in page


SNAKEDEPLOY = "snakedeploy==0.17.1"


def test_snakedeploy_deploys_the_module_from_a_git_url(tmp_path):
    """`snakedeploy deploy-workflow <git URL> <dest> --tag ...` (from PyPI, into a venv beside this one):
    a small deployment (config/, profiles/, LICENSE and a Snakefile, nothing of a checkout's .venv)
    whose module loads workflow/Snakefile and plans the demo. Before, the module named the deployed
    Snakefile itself (Snakefile at the root), a KeyError. The URL's host part picks snakedeploy's
    GitHub provider; the deployed github(...) is then pointed at the same repository on disk, as
    this test has no GitHub."""
    repo, tag = git_source(tmp_path / "github.com" / "owner" / "eat-asd")
    venv = tmp_path / "deploy venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", SNAKEDEPLOY],
                         capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr[-3000:]
    dest = tmp_path / "deployed"
    out = subprocess.run([str(venv / "bin" / "snakedeploy"), "deploy-workflow", f"file://{repo}", str(dest), "--tag", tag],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    snakefile = (dest / "workflow" / "Snakefile").read_text()
    assert f'github("owner/eat-asd", path="workflow/Snakefile", tag="{tag}")' in snakefile, snakefile
    assert (dest / "config" / "config.yaml").is_file() and (dest / "profiles" / "default").is_dir()
    assert not (dest / ".venv").exists() and sum(f.stat().st_size for f in dest.rglob("*") if f.is_file()) < 1_000_000
    offline = snakefile.replace('github("owner/eat-asd",', f"gitfile({str(repo)!r},")
    (dest / "workflow" / "Snakefile").write_text(offline)
    plan = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", "config/demo.yaml"], cwd=dest,
                          env=venv_env(), capture_output=True, text=True, timeout=300)
    assert plan.returncode == 0, plan.stdout[-3000:] + plan.stderr[-3000:]
    assert planned_jobs(plan.stdout + plan.stderr)["train_encoder"] == 1


def test_a_second_run_into_a_locked_results_folder_stops(tmp_path):
    results = tmp_path / "shared results"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from eat_asd.lock import lock_results; "
                               "lock_results(sys.argv[1]); print('locked', flush=True); time.sleep(120)", str(results)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        write_config(tmp_path, results=str(results))
        out = snakemake(tmp_path, "--cores", "1", check=False)
        assert out.returncode != 0
        assert f"results folder {results} is in use by another run" in out.stdout + out.stderr
        assert not (tmp_path / "demo").exists()  # stopped before the first job
    finally:
        holder.kill()
        holder.wait()
    snakemake(tmp_path, "-n")  # the lock is gone with its holder


def test_unsafe_machine_folder_name_is_refused_at_planning(tmp_path):
    root = tmp_path / "data"
    for name in ("fan`touch X`", "pump"):
        folder = root / "dev_data" / "train" / name
        folder.mkdir(parents=True)
        import numpy as np
        import soundfile as sf
        sf.write(folder / "normal_0000.wav", np.zeros(1600, dtype=np.float32), 16000)
    write_config(tmp_path, demo=None, data_root=str(root))
    out = snakemake(tmp_path, "-n", check=False)
    assert out.returncode != 0
    assert "fan`touch X`" in out.stdout + out.stderr and "may hold only letters" in out.stdout + out.stderr
    assert not (tmp_path / "X").exists()


def test_snakefmt_and_lint_are_clean(demo_run):
    out = subprocess.run([str(Path(sys.executable).parent / "snakefmt"), "--check", "Snakefile", "workflow"],
                         cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    workdir, _, _ = demo_run
    lint = snakemake(workdir, "--lint")
    assert "Congratulations, your workflow is in a good condition!" in lint.stdout + lint.stderr


def test_slurm_profile_groups_the_small_jobs(demo_run):
    """Dry run through the SLURM profile: one submission per machine type for its data, one for its scores."""
    workdir, _, _ = demo_run
    out = snakemake(workdir, "-n", "--forceall", "--profile", str(REPO / "slurm"))
    text = out.stdout + out.stderr
    jobs = planned_jobs(text)
    assert jobs["manifest"] == jobs["features"] == 2 * len(MACHINES)
    groups = {line.split("Group job")[1].split()[0] for line in text.splitlines() if "Group job" in line}
    assert groups == {f"prep_{m}" for m in MACHINES} | {f"score_{m}" for m in MACHINES} | {"summary"}, groups


FAKE_CONDA = """#!/bin/sh
# conda as Snakemake calls it to create envs: answers its checks, records each env file, makes the prefix
case "$*" in
    "--version") echo "conda 25.1.1" ;;
    "info --json") echo '{"conda_prefix": "/opt/conda", "platform": "linux-64"}' ;;
    "config --get channel_priority --json") echo '{"get": {"channel_priority": "strict"}}' ;;
    "env create"*)
        while [ $# -gt 0 ]; do
            case "$1" in --file) cat "$2" >> "$CONDA_LOG" ;; --prefix) mkdir -p "$2/bin" ;; esac
            shift
        done ;;
    "clean -y --tarballs") ;;
    *) echo "unexpected: conda $*" >&2; exit 1 ;;
esac
"""


def test_conda_env_creation_as_the_readme_gives_it_needs_no_data(tmp_path):
    """The README's one-time `--conda-create-envs-only` command, in a checkout without any data, asks
    conda (a stand-in here: conda is not reachable) for both envs. Before, planning stopped at
    `data root data/dev_data: no such folder`."""
    readme = (REPO / "README.md").read_text()
    commands = [line.split("#")[0].split() for line in readme.splitlines()
                if line.startswith("snakemake ") and "--conda-create-envs-only" in line]
    assert len(commands) == 1, commands
    checkout = tmp_path / "checkout"  # the README's command runs from the checkout: its config/ with no data
    shutil.copytree(REPO / "config", checkout / "config")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "conda").write_text(FAKE_CONDA)
    (fake / "conda").chmod(0o755)
    env = {**venv_env(fake), "CONDA_LOG": str(tmp_path / "conda.log")}
    out = subprocess.run([sys.executable, "-m", *commands[0], "--snakefile", str(REPO / "Snakefile")], cwd=checkout,
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    created = (tmp_path / "conda.log").read_text()
    for name in ("data", "torch"):
        assert (REPO / "envs" / f"{name}.yaml").read_text() in created, f"envs/{name}.yaml was not created"
    assert not (checkout / "results" / "demo").exists()  # nothing ran


def test_conda_env_creation_with_the_data_config_says_what_to_add(tmp_path):
    shutil.copytree(REPO / "config", tmp_path / "config")
    out = subprocess.run([sys.executable, "-m", "snakemake", "--use-conda", "--conda-create-envs-only", "--snakefile",
                          str(REPO / "Snakefile")], cwd=tmp_path, env=venv_env(), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode != 0
    assert "no such folder" in out.stderr and "add --configfile config/demo.yaml" in out.stderr
