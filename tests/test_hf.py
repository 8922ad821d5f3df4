"""Saved encoders as Hugging Face transformers models: remote code where the package is absent,
registered classes where it is installed."""

import json
import os
import subprocess
import sys

import numpy as np
import torch

from eat_asd.eat import EAT, load_eat, save_eat
from eat_asd.hf import HF_CONFIG, MODELING_FILE, modeling_source

# Runs where eat_asd cannot be imported: isolated mode (-I: no PYTHONPATH, no cwd) and the
# path entries that hold the package (an editable install adds one) removed.
WITHOUT_PACKAGE = """
import os, sys
sys.path = [p for p in sys.path if not os.path.isdir(os.path.join(p, "eat_asd"))]
try:
    import eat_asd
    raise SystemExit("eat_asd is importable")
except ImportError:
    pass
import numpy as np, torch
from transformers import AutoModel
model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
with torch.no_grad():
    out = model(torch.from_numpy(np.load(sys.argv[2])))
np.save(sys.argv[3], out.last_hidden_state.numpy())
print(type(model).__module__)
"""


def test_automodel_loads_the_folder_without_the_package(tiny_model, tmp_path):
    folder = save_eat(tiny_model, tmp_path / "encoder")
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"] == HF_CONFIG["auto_map"] and config["model_type"] == "eat"
    assert (folder / MODELING_FILE).read_text() == modeling_source()
    x = torch.randn(2, 1, 64, 128)
    np.save(tmp_path / "x.npy", x.numpy())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-I", "-c", WITHOUT_PACKAGE, str(folder), str(tmp_path / "x.npy"),
                          str(tmp_path / "y.npy")], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().startswith("transformers_modules.")  # the folder's own code, not the package
    with torch.inference_mode():
        expected = load_eat(folder)(x).numpy()
    assert np.abs(np.load(tmp_path / "y.npy") - expected).max() < 1e-5


def test_registered_classes_load_hub_checkpoints_without_remote_code(reference, tiny_model, tmp_path):
    import eat_asd.hf_modeling  # noqa: F401  (registers model type "eat")
    from transformers import AutoModel

    # the reference checkpoint: Hub key names, no auto_map, no modeling file
    hub = AutoModel.from_pretrained(reference / "eat_tiny").eval()
    assert type(hub) is eat_asd.hf_modeling.EATModel
    x = torch.from_numpy(np.load(reference / "eat_tiny" / "input.npy"))
    with torch.no_grad():
        out = hub(x)
    assert np.abs(out.last_hidden_state.numpy() - np.load(reference / "eat_tiny" / "expected_features.npy")).max() < 1e-4
    assert torch.equal(out.pooler_output, out.last_hidden_state[:, 0])
    assert torch.equal(hub.pool(out.last_hidden_state, "mean"), EAT.pool(out.last_hidden_state, "mean"))
    # a saved folder loads through the registered classes too, positions rebuilt if absent
    folder = save_eat(tiny_model, tmp_path / "encoder")
    model = AutoModel.from_pretrained(folder).eval()
    assert type(model) is eat_asd.hf_modeling.EATModel
    x = torch.randn(1, 1, 32, 128)
    with torch.no_grad():
        assert (model(x).last_hidden_state - tiny_model(x)).abs().max() < 1e-5


def test_hub_checkpoint_without_positions_gets_them_rebuilt(reference, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file
    from transformers import AutoModel

    import eat_asd.hf_modeling  # noqa: F401

    folder = tmp_path / "c"
    shutil.copytree(reference / "eat_tiny", folder)
    state = load_file(str(folder / "model.safetensors"))
    save_file({k: v for k, v in state.items() if "positions" not in k}, str(folder / "model.safetensors"))
    model = AutoModel.from_pretrained(folder).eval()
    x = torch.from_numpy(np.load(reference / "eat_tiny" / "input.npy"))
    with torch.no_grad():
        y = model(x).last_hidden_state.numpy()
    assert np.abs(y - np.load(reference / "eat_tiny" / "expected_features.npy")).max() < 1e-4
