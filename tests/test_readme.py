"""The README's command blocks run as written."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.slow


def readme_block(heading: str) -> str:
    section = (REPO / "README.md").read_text().split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def test_without_snakemake_block_runs_on_the_demo(tmp_path):
    block = readme_block("Without Snakemake")
    # the demo config with a short training, so that the test takes seconds; every command as written
    config = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    config["train"].update(epochs=1)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "demo.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=1200)
    assert out.returncode == 0, out.stderr[-4000:]
    auroc = pd.read_csv(tmp_path / "eval" / "tables" / "auroc.csv")
    assert auroc["machine_type"].tolist() == ["fan", "pump", "overall"]
    assert (tmp_path / "eval" / "submission" / "anomaly_score_fan_section_00_test.csv").is_file()
    assert (tmp_path / "trained" / "encoder" / "model.safetensors").is_file()
    # the PEFT snippet of "Sharing the model", as written, with the demo's base encoder and this adapter, in a
    # Python that has not imported eat_asd (before, it lacked trust_remote_code=True and raised ValueError)
    section = (REPO / "README.md").read_text().split("## Sharing the model\n", 1)[1].split("\n## ", 1)[0]
    (snippet,) = [b for b in re.findall(r"```python\n(.*?)```", section, re.S) if "PeftModel" in b]
    adapter_base = yaml.safe_load((tmp_path / "trained" / "lora_adapter" / "adapter_config.json").read_text())
    assert adapter_base["base_model_name_or_path"] == "encoder"  # the local base's folder name, not its path
    snippet = snippet.replace('"worstchan/EAT-base_epoch30_pretrain"', '"demo/encoder"').replace(
        '"results/encoder/lora_adapter"', '"trained/lora_adapter"')
    out = subprocess.run([sys.executable, "-c", snippet + "\nassert 'eat_asd' not in __import__('sys').modules\n"
                          "import torch\nprint(model(torch.zeros(1, 1, 208, 128)).last_hidden_state.shape)"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]


def readme_config_keys() -> set[str]:
    """Keys named in the README's Configuration table; `a.{b,c}` names a.b and a.c."""
    section = (REPO / "README.md").read_text().split("## Configuration\n", 1)[1].split("\n## ", 1)[0]
    keys = set()
    for row in re.findall(r"^\| (.*?) \|", section, re.M):
        for name in re.findall(r"`([^`]+)`", row):
            head, _, tail = name.partition("{")
            keys |= {head + part.strip() for part in tail.rstrip("}").split(",")} if tail else {name}
    return keys


def schema_keys() -> set[str]:
    from eat_asd.config import _resolve, _schema

    schema = _schema()
    keys = set()

    def walk(prefix, node):
        node = _resolve(node, schema)
        branches = [b for b in node.get("oneOf", []) if b.get("type") == "object"] or [node]
        for branch in branches:
            for key, sub in branch.get("properties", {}).items():
                sub = _resolve(sub, schema)
                if sub.get("type") == "object" and "properties" in sub or any("properties" in b for b in sub.get("oneOf", [])):
                    walk(f"{prefix}{key}.", sub)
                else:
                    keys.add(prefix + key)

    walk("", schema)
    return keys


def test_every_config_key_is_in_the_readme_table():
    missing = schema_keys() - readme_config_keys() - {"overrides"}
    assert not missing, f"config keys missing from the README's Configuration table: {sorted(missing)}"
