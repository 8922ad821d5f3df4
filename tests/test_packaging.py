"""The places that declare dependencies agree: pyproject.toml, requirements.lock, envs/*.yaml."""

import re
import tomllib

from conftest import REPO, env_pip

SOURCE_LINE = "-e ${EAT_ASD_SOURCE}"


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req, 1)[0].lower().replace("_", "-")


def _lock() -> dict[str, str]:
    lock = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            lock[_name(name)] = version.strip()
    return lock


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_conda_envs_pin_the_lock_versions_and_install_the_package():
    lock = _lock()
    for env, extra in (("data", ""), ("torch", "[model]")):
        pip = env_pip(env)
        assert pip[-1] == SOURCE_LINE + extra, f"envs/{env}.yaml must end by installing the package: {SOURCE_LINE + extra}"
        for req in pip[:-1]:
            name, _, version = req.partition("==")
            assert version == lock[_name(name)], f"envs/{env}.yaml: {req} is not the version in requirements.lock"


def test_each_env_holds_exactly_what_its_install_declares():
    project = _project()
    base = {_name(r) for r in project["dependencies"]}
    model = {_name(r) for r in project["optional-dependencies"]["model"]}
    assert {_name(r) for r in env_pip("data")[:-1]} == base  # light jobs: no torch
    assert "torch" not in base and "torch" in model
    assert {_name(r) for r in env_pip("torch")[:-1]} == base | model


def test_lock_pins_every_dependency_at_an_allowed_version():
    lock = _lock()
    project = _project()
    reqs = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    for req in reqs:
        assert _name(req) in lock, f"{req} is not pinned in requirements.lock"
    assert lock["torch"] == lock["torchaudio"] == "2.11.0"


def _oldest_python() -> str:
    """The oldest Python the project claims, from pyproject.toml's requires-python (">=X.Y")."""
    claim = _project()["requires-python"]
    assert re.fullmatch(r">=\d+\.\d+", claim), f"requires-python = {claim!r}: expected >=X.Y"
    return claim[2:]


def test_every_locked_package_supports_the_oldest_python_claimed():
    """Each pinned package's own Requires-Python (from the metadata of its installed distribution, as
    pip reads it from the wheel: offline) admits the oldest Python that pyproject.toml and the README
    claim, so the quick start on that Python installs the lock as it is."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.specifiers import SpecifierSet

    oldest = _oldest_python()
    refused = {}
    for name, version in _lock().items():
        try:
            meta = distribution(name).metadata
        except PackageNotFoundError:
            raise AssertionError(f"{name}=={version} of requirements.lock is not installed here") from None
        assert meta["Version"] == version, f"{name}: {meta['Version']} installed, the lock pins {version}"
        spec = meta.get("Requires-Python")
        if spec and not SpecifierSet(spec).contains(oldest + ".0"):
            refused[f"{name}=={version}"] = spec
    assert not refused, f"pyproject.toml claims Python {oldest}+, but these pins need more: {refused}"


def test_readme_and_quickstart_state_the_same_oldest_python():
    oldest = _oldest_python()
    assert f"`python3` ({oldest}+;" in (REPO / "README.md").read_text()
    # the quick start reads it from pyproject.toml rather than a second copy
    assert "requires-python" in (REPO / "scripts" / "quickstart.sh").read_text()


def test_quickstart_names_the_python_it_needs_when_it_finds_an_older_one(tmp_path):
    """A python3 on PATH that reports 3.10 (Ubuntu 22.04's): the quick start stops at once, before
    making a venv or calling pip, and says which Python it needs and how to point it at one."""
    import subprocess

    oldest = _oldest_python()
    major, minor = map(int, oldest.split("."))
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python3").write_text(f"#!/bin/sh\necho {major}.{minor - 1}\n")
    (fake / "python3").chmod(0o755)
    venv = tmp_path / "venv"
    env = {**__import__("os").environ, "PATH": f"{fake}:/usr/bin:/bin", "EAT_ASD_VENV": str(venv)}
    env.pop("PYTHON", None)
    out = subprocess.run(["bash", str(REPO / "scripts" / "quickstart.sh"), "setup"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert f"needs Python {oldest} or newer" in out.stderr and f"is Python {major}.{minor - 1}" in out.stderr
    assert "PYTHON=python" in out.stderr
    assert not venv.exists()
    # the same check for a venv left by an older Python
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text(f"#!/bin/sh\necho {major}.{minor - 1}\n")
    (venv / "bin" / "python").chmod(0o755)
    out = subprocess.run(["bash", str(REPO / "scripts" / "quickstart.sh"), "setup"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and f"the existing {venv} is Python {major}.{minor - 1}" in out.stderr


def test_every_module_that_runs_snakemake_is_marked_slow():
    """The README's `-m 'not slow and not slurm'` runs the unit tests alone: the end-to-end runs are marked."""
    import re
    from pathlib import Path

    tests = Path(__file__).parent
    unmarked = [p.name for p in sorted(tests.glob("test_*.py"))
                if re.search(r"\bsnakemake\(|\bdemo_run\b", p.read_text())
                and not re.search(r"^pytestmark = pytest\.mark\.(slow|slurm)", p.read_text(), re.M)]
    assert not unmarked, f"test modules that run Snakemake without a slow or slurm mark: {unmarked}"


def test_the_slurm_training_job_asks_for_the_threads_the_rule_gives():
    """The training job's thread count is written in its rule; SLURM's cpus_per_task must grant as many."""
    import re

    import yaml

    threads = re.search(r"rule train_encoder:.*?\n    threads: (\d+)", (REPO / "workflow" / "rules" / "train.smk").read_text(), re.S)
    slurm = yaml.safe_load((REPO / "slurm" / "config.yaml").read_text())
    assert slurm["set-resources"]["train_encoder"]["cpus_per_task"] == int(threads.group(1))
    assert slurm["set-resources"]["exp_train_encoder"] == slurm["set-resources"]["train_encoder"]
    assert "set-threads" not in yaml.safe_load((REPO / "profiles" / "default" / "config.yaml").read_text())
