"""Where the pre-trained encoder comes from: a local folder or a Hugging Face Hub id. Checked
without torch, so that planning refuses an unusable `encoder` before any job runs."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import ConfigError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# owner/name as the Hub spells repository ids
HUB_ID = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?/[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")


def is_hub_id(source: str) -> bool:
    return bool(HUB_ID.match(source)) and "--" not in source and ".." not in source


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def check_encoder_source(source: str) -> None:
    """Refuse a local folder without config.json and model.safetensors, a name that is neither a
    folder nor a Hub id, and (with HF_HUB_OFFLINE set) a Hub id missing from the local cache."""
    path = Path(source).expanduser()
    if path.is_dir():
        missing = [name for name in (CONFIG_NAME, WEIGHTS_NAME) if not (path / name).is_file()]
        if missing:
            raise ConfigError(f"encoder = {source}: the folder has no {' and no '.join(missing)}")
        return
    if path.exists() or not is_hub_id(source):
        raise ConfigError(f"encoder = {source}: no such folder, and not a Hugging Face Hub id (owner/name)")
    if hub_offline() and not hub_cache_folder(source):
        raise ConfigError(f"encoder = {source}: HF_HUB_OFFLINE is set and it is not in the local Hugging Face cache "
                          "with config.json and weights; download it once with internet, or point encoder to a local folder")


def hub_cache_folder(repo_id: str) -> Path | None:
    """The cached snapshot of a Hub model holding config.json and weights, if there is one."""
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(repo_id, CONFIG_NAME)
    if not isinstance(config, str):  # None, or a marker that the file is known not to exist
        return None
    folder = Path(config).parent
    return folder if any(folder.glob("*.safetensors")) or any(folder.glob("*.bin")) else None
