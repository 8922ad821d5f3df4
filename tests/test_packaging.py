"""The places that declare dependencies agree: pyproject.toml, requirements.lock, envs/*.yaml."""

import re
import tomllib

import yaml

from conftest import REPO


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req, 1)[0].lower().replace("_", "-")


def test_conda_envs_match_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {_name(r): r for r in project["dependencies"]}
    for env_file in sorted((REPO / "envs").glob("*.yaml")):
        env = yaml.safe_load(env_file.read_text())
        pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
        for req in pip:
            assert _name(req) in declared, f"{env_file.name}: {req} is not a dependency in pyproject.toml"
            assert req.replace(" ", "") == declared[_name(req)].replace(" ", ""), f"{env_file.name}: {req} != {declared[_name(req)]}"
    torch_env = yaml.safe_load((REPO / "envs" / "torch.yaml").read_text())
    torch_pip = next(d["pip"] for d in torch_env["dependencies"] if isinstance(d, dict))
    assert {_name(r) for r in torch_pip} == set(declared), "the torch jobs' env lacks a package dependency"


def test_lock_pins_every_dependency_at_an_allowed_version():
    lock = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            lock[_name(name)] = version.strip()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + project["optional-dependencies"]["workflow"] + project["optional-dependencies"]["test"]
    for req in reqs:
        assert _name(req) in lock, f"{req} is not pinned in requirements.lock"
    assert lock["torch"] == lock["torchaudio"] == "2.11.0"
