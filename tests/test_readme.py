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
