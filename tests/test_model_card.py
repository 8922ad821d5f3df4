"""The model card written from a run's files, and `eat-asd publish` up to the upload."""

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from conftest import REPO
from eat_asd.cli import main
from eat_asd.model_card import encoder_card, write_encoder_card
from eat_asd.publish import PublishError, publish, upload_plan

CONFIG = {"data_root": "data/dcase2024/dev_data", "encoder": "worstchan/EAT-base_epoch30_pretrain", "features": {"target_frames": 1024},
          "scoring": {"k": 1, "bank_split": "all", "domain_strategy": "pooled"}, "embedding": {"pooling": "cls"}}
COMMAND = "snakemake --cores 8 --configfile config/recipes/seed_recipe.yaml"


def manifest(machine, rows):
    return pd.DataFrame([dict(machine=machine, split=s, domain=d, label=lab, section="00", clip_id="0", attribute_string="",
                              sample_rate=16000, channels=1, duration=10.0) for s, d, lab, n in rows for _ in range(n)])


@pytest.fixture
def run_files(tmp_path):
    tables = tmp_path / "tables"
    tables.mkdir()
    means = {"harmonic mean": {"AUC": 0.6, "pAUC": 0.55}, "source harmonic mean": {"AUC": 0.65},
             "target harmonic mean": {"AUC": 0.58}}
    (tables / "summary.json").write_text(json.dumps(dict(official_score=0.61234, overall_auroc=0.7, means=means)))
    pd.DataFrame(dict(machine_type=["fan", "pump", "overall"], auroc=[0.8125, 0.59, 0.7], n_normal=[20, 20, 40],
                      n_anomaly=[20, 20, 40])).to_csv(tables / "auroc.csv", index=False)
    training = tmp_path / "encoder_summary.json"
    training.write_text(json.dumps(dict(mode="lora", encoder="worstchan/EAT-base_epoch30_pretrain", encoder_revision="v1",
                                        encoder_commit="c" * 40, classes=2, granularity="machine", best_epoch=1,
                                        settings=dict(mode="lora", epochs=1, lr=1e-4, lr_schedule="constant", batch_size=16,
                                                      pooling="cls", r=8, alpha=32))))
    paths = []
    for machine in ("fan", "pump"):
        for part, rows in (("train", [("train", "source", "normal", 990), ("train", "target", "normal", 10)]),
                           ("test", [("test", "source", "normal", 50), ("test", "source", "anomaly", 50),
                                     ("test", "target", "normal", 50), ("test", "target", "anomaly", 50)])):
            paths.append(tmp_path / f"{machine}.{part}.csv")
            manifest(machine, rows).to_csv(paths[-1], index=False)
    return tables / "summary.json", tables / "auroc.csv", training, paths


def test_encoder_card_holds_data_settings_results_and_command(run_files):
    card = encoder_card(*run_files, CONFIG, COMMAND)
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["library_name"] == "transformers" and meta["base_model"] == "worstchan/EAT-base_epoch30_pretrain"
    metrics = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert metrics == {"official_score": 0.6123, "auroc": 0.7}  # rounded as the text shows them
    assert meta["license"] == "mit" and meta["model-index"][0]["results"][0]["dataset"]["name"] == "dcase2024 dev_data"
    body = card.split("---\n", 2)[2]
    assert "Official DCASE score: 0.6123" in body and f"```bash\n{COMMAND}\n```" in body
    assert "AUC(source) 0.6500, AUC(target) 0.5800, pAUC 0.5500" in body
    assert "| fan | 0.8125 |" in body and "| pump | 0.5900 |" in body  # per-machine results
    assert "Machine types: fan, pump" in body and "| fan | 990 | 10 | 50 | 50 | 50 | 50 |" in body  # clips per domain
    assert "| machine_type | train source normal | train target normal | test source anomaly |" in body
    assert "| lr_schedule | constant |" in body and "| lr | 0.0001 |" in body  # readable, not JSON
    assert "bank split `all`" in body and "revision `" + "c" * 40 in body
    assert "zero-padded or cropped to 1024 frames" in body and "(fbank - (-4.268)) / (4.569 * 2)" in body


def test_names_from_data_and_config_cannot_become_html(run_files, tmp_path):
    """Before, an encoder folder named with a backtick broke out of inline code and rendered a live <img onerror>;
    a local base had no note, and the data set was named after its last folder ("data")."""
    from markdown_it import MarkdownIt

    summary, auroc, training, manifests = run_files
    evil = "enc`<img src=x onerror=alert(1)>`"
    training.write_text(json.dumps(dict(mode="lora", encoder=f"models/{evil}", encoder_hub_id=None,
                                        encoder_local_path=f"/home/me/models/{evil}", classes="<b>2</b>",
                                        granularity="machine", settings=dict(target_modules=["qkv", "proj"], lr=0.003))))
    config = {**CONFIG, "data_root": "data", "encoder": f"models/{evil}",
              "scoring": {"k": 1, "bank_split": "<script>x</script>", "domain_strategy": "`pooled"}}
    card = encoder_card(summary, auroc, training, manifests, config, "snakemake --config x='```\n<img src=y onerror=z>'")
    meta = yaml.safe_load(card.split("---\n")[1])
    assert "base_model" not in meta and meta["model-index"][0]["results"][0]["dataset"]["name"] == "DCASE Task 2 data"
    page = MarkdownIt("commonmark").render(card.split("---\n", 2)[2])
    assert "<img" not in page and "<script" not in page and "<b>" not in page
    assert "enc`&lt;img src=x onerror=alert(1)&gt;`" in page  # shown as written, as code
    assert "not a Hugging Face Hub model" in card and "/home/me" not in card
    assert "| target_modules | qkv, proj |" in card and "| lr | 0.003 |" in card
    demo = encoder_card(summary, auroc, training, manifests, {**config, "demo": {"seed": 0}}, "cmd")
    assert "synthetic demo" in yaml.safe_load(demo.split("---\n")[1])["model-index"][0]["results"][0]["dataset"]["name"]


def test_card_writer_imports_no_torch(run_files, tmp_path):
    code = ("import json, sys; from eat_asd.model_card import write_encoder_card; from eat_asd import publish;"
            f"write_encoder_card({str(tmp_path / 'README.md')!r}, *{[str(p) for p in run_files[:3]]!r}, {[str(p) for p in run_files[3]]!r}, {{}}, 'cmd');"
            "assert 'torch' not in sys.modules, 'torch imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(REPO / "src")})
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "README.md").read_text().startswith("---\n")


@pytest.fixture
def encoder_folder(tmp_path, tiny_model, run_files):
    from eat_asd.eat import save_eat

    folder = save_eat(tiny_model, tmp_path / "encoder")
    write_encoder_card(folder / "README.md", *run_files, CONFIG, COMMAND)
    adapter = tmp_path / "lora_adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"x")
    return folder, adapter


def test_publish_dry_run_lists_the_upload(encoder_folder, capsys):
    folder, adapter = encoder_folder
    (folder / ".model.safetensors.x.tmp").write_text("partial")  # never uploaded
    plan = upload_plan(folder, "me/eat-asd-fan", adapter)
    assert [p for _, p in plan] == ["README.md", "config.json", "model.safetensors", "modeling_eat.py",
                                    "lora_adapter/adapter_config.json", "lora_adapter/adapter_model.safetensors"]
    assert main(["publish", "--repo-id", "me/eat-asd-fan", "--encoder", str(folder), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "would upload" in printed and "me/eat-asd-fan/modeling_eat.py" in printed and "lora_adapter" not in printed


def test_publish_calls_the_hub_api_with_the_folders(encoder_folder):
    folder, adapter = encoder_folder
    calls = []

    class FakeApi:
        def create_repo(self, repo_id, **kw):
            calls.append(("create_repo", repo_id, kw))

        def upload_folder(self, **kw):
            calls.append(("upload_folder", kw["repo_id"], kw))

    publish(folder, "me/eat", private=True, adapter_dir=adapter, api=FakeApi())
    assert calls[0] == ("create_repo", "me/eat", dict(private=True, exist_ok=True, repo_type="model"))
    assert calls[1][2]["folder_path"] == str(folder) and "path_in_repo" not in calls[1][2]
    assert calls[2][2]["folder_path"] == str(adapter) and calls[2][2]["path_in_repo"] == "lora_adapter"


def test_publish_refuses_incomplete_folders(encoder_folder, tmp_path, caplog):
    folder, _ = encoder_folder
    with pytest.raises(PublishError, match="--repo-id 'noslash'"):
        upload_plan(folder, "noslash")
    (folder / "README.md").unlink()
    with pytest.raises(PublishError, match=r"README\.md: missing \(the model card"):
        upload_plan(folder, "me/eat")
    assert main(["publish", "--repo-id", "me/eat", "--encoder", str(folder), "--dry-run"]) == 1
    assert "README.md: missing" in caplog.text
    config = json.loads((folder / "config.json").read_text())
    (folder / "README.md").write_text("card")
    (folder / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "auto_map"}))
    with pytest.raises(PublishError, match="no auto_map"):
        upload_plan(folder, "me/eat")
    (folder / "config.json").write_text(json.dumps(config))
    adapter = tmp_path / "lora_adapter"
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/home/me/models/eat"}))
    with pytest.raises(PublishError, match="base_model_name_or_path is the local path /home/me/models/eat"):
        upload_plan(folder, "me/eat", adapter)  # never uploaded
    with pytest.raises(PublishError, match="not a peft adapter"):
        upload_plan(tmp_path / "encoder", "me/eat", tmp_path)


def test_publish_without_a_connection_is_one_line(encoder_folder, monkeypatch, caplog, capsys):
    """Offline, `publish` used to end in the HTTP client's raw ConnectError traceback."""
    folder, adapter = encoder_folder
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    from huggingface_hub import HfApi

    with pytest.raises(PublishError, match=r"me/eat: upload to the Hugging Face Hub \(http://127.0.0.1:9\) failed: ConnectError"):
        publish(folder, "me/eat", adapter_dir=adapter, api=HfApi(endpoint="http://127.0.0.1:9"))
    assert main(["publish", "--repo-id", "me/eat", "--encoder", str(folder)]) == 1
    (error,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert error.getMessage().startswith("publish: me/eat: upload to the Hugging Face Hub") and "\n" not in error.getMessage()
    assert not error.exc_info and "Traceback" not in capsys.readouterr().err


def test_a_local_encoder_names_the_hub_model_it_came_from(tmp_path, reference):
    import shutil

    from eat_asd.encoder_source import hub_origin

    snapshot = tmp_path / "hub" / "models--worstchan--EAT-base_epoch30_pretrain" / "snapshots" / ("a" * 40)
    shutil.copytree(reference / "eat_tiny", snapshot)
    assert hub_origin(snapshot) == ("worstchan/EAT-base_epoch30_pretrain", "a" * 40)
    folder = shutil.copytree(reference / "eat_tiny", tmp_path / "mine")
    assert hub_origin(folder) == (None, None)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "_name_or_path": "worstchan/EAT-large_epoch20_pretrain"}))
    assert hub_origin(folder) == ("worstchan/EAT-large_epoch20_pretrain", None)
