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
