"""Upload the fine-tuned encoder folder (a transformers model with its model card) and, if asked,
its LoRA adapter to the Hugging Face Hub. Everything up to the upload is checked first."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import PublishError
from .encoder_source import is_hub_id
from .hf import HF_CONFIG
from .layout import ADAPTER_CONFIG_FILE, ADAPTER_FOLDER, CONFIG_FILE, MODEL_CARD_FILE, MODELING_FILE, WEIGHTS_FILE


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def upload_plan(encoder_dir: str | Path, repo_id: str, adapter_dir: str | Path | None = None) -> list[tuple[Path, str]]:
    """(local file, path in the repo) of everything that would be uploaded; PublishError if the
    encoder folder is not a complete Hugging Face model with a model card."""
    if not is_hub_id(repo_id):
        raise PublishError(f"--repo-id {repo_id!r}: expected owner/name")
    encoder_dir = Path(encoder_dir)
    if not encoder_dir.is_dir():
        raise PublishError(f"encoder folder {encoder_dir}: not found")
    needed = {CONFIG_FILE: "the model config", MODELING_FILE: "the model code", MODEL_CARD_FILE: "the model card, from the workflow step model_card"}
    for name, what in needed.items():
        if not (encoder_dir / name).is_file():
            raise PublishError(f"{encoder_dir / name}: missing ({what})")
    if not (encoder_dir / WEIGHTS_FILE).is_file():
        raise PublishError(f"{encoder_dir / WEIGHTS_FILE}: missing (the weights)")
    config = json.loads((encoder_dir / CONFIG_FILE).read_text())
    if config.get("auto_map") != HF_CONFIG["auto_map"]:
        raise PublishError(f"{encoder_dir / CONFIG_FILE}: no auto_map pointing to {MODELING_FILE}; save it again with eat_asd.eat.save_eat")
    plan = [(p, p.relative_to(encoder_dir).as_posix()) for p in _files(encoder_dir)]
    if adapter_dir is not None:
        adapter_dir = Path(adapter_dir)
        if not (adapter_dir / ADAPTER_CONFIG_FILE).is_file():
            raise PublishError(f"{adapter_dir / ADAPTER_CONFIG_FILE}: missing (not a peft adapter folder)")
        base = json.loads((adapter_dir / ADAPTER_CONFIG_FILE).read_text()).get("base_model_name_or_path") or ""
        if Path(base).is_absolute() or base.startswith(("~", ".")):
            # adapters written before the base was named neutrally: the path would be published
            raise PublishError(f"{adapter_dir / ADAPTER_CONFIG_FILE}: base_model_name_or_path is the local path {base}; "
                               "set it to the base's Hub id or folder name before publishing")
        plan += [(p, f"{ADAPTER_FOLDER}/{p.relative_to(adapter_dir).as_posix()}") for p in _files(adapter_dir)]
    return plan


def publish(encoder_dir: str | Path, repo_id: str, private: bool = False, adapter_dir: str | Path | None = None,
            dry_run: bool = False, api=None) -> list[tuple[Path, str]]:
    """Create the repo (if needed) and upload; with dry_run, only return what would be uploaded."""
    plan = upload_plan(encoder_dir, repo_id, adapter_dir)
    if dry_run:
        return plan
    from huggingface_hub.errors import HTTPError

    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        ignore = [".*", "**/.*"]
        api.upload_folder(repo_id=repo_id, folder_path=str(encoder_dir), ignore_patterns=ignore,
                          commit_message="Upload the fine-tuned EAT encoder and its model card")
        if adapter_dir is not None:
            api.upload_folder(repo_id=repo_id, folder_path=str(adapter_dir), path_in_repo=ADAPTER_FOLDER,
                              ignore_patterns=ignore, commit_message="Upload the LoRA adapter")
    except (HTTPError, OSError) as err:
        # no connection, HF_HUB_OFFLINE, no token or a refusal by the Hub: one line, not the HTTP client's traceback
        raise PublishError(f"{repo_id}: upload to the Hugging Face Hub ({_endpoint(api)}) failed: {_first_line(err)}") from err
    return plan


def _endpoint(api) -> str:
    from huggingface_hub import constants

    return getattr(api, "endpoint", None) or constants.ENDPOINT


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")
