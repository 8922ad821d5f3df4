"""Where the pre-trained encoder comes from: a local folder or a Hugging Face Hub id. Checked
without torch, so that planning refuses an unusable `encoder` before any job runs."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import ConfigError
from .layout import CONFIG_FILE, WEIGHTS_FILE

# owner/name as the Hub spells repository ids
HUB_ID = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?/[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")


def is_hub_id(source: str) -> bool:
    return bool(HUB_ID.match(source)) and "--" not in source and ".." not in source


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


# config.json keys that set the architecture and that the weights cannot tell for sure (the heads not at
# all): a missing one would load silently with a default, so it is refused, named
REQUIRED_CONFIG_KEYS = {"embed_dim": "the width of the tokens", "depth": "the number of blocks",
                        "num_heads": "the attention heads per block"}


def check_encoder_source(source: str) -> None:
    """Refuse a local folder without config.json and model.safetensors, a name that is neither a
    folder nor a Hub id, and (with HF_HUB_OFFLINE set) a Hub id missing from the local cache; a folder
    (or, offline, the cached Hub snapshot) whose config.json lacks an architecture key or does not fit the shapes
    in its weights' header is refused too, naming the keys."""
    path = Path(source).expanduser()
    if path.is_dir():
        missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if not (path / name).is_file()]
        if missing:
            raise ConfigError(f"encoder = {source}: the folder has no {' and no '.join(missing)}")
        check_config_fits_weights(path, source)
        return
    if path.exists() or not is_hub_id(source):
        raise ConfigError(f"encoder = {source}: no such folder, and not a Hugging Face Hub id (owner/name)")
    if hub_offline():  # the job will load the cached snapshot: check it now (online, the job downloads and checks)
        cached = hub_cache_folder(source)
        if not cached:
            raise ConfigError(f"encoder = {source}: HF_HUB_OFFLINE is set and it is not in the local Hugging Face cache "
                              f"with {CONFIG_FILE} and weights; download it once with internet, or point encoder to a local folder")
        check_config_fits_weights(cached, source)


def missing_config_keys(config: dict) -> list[str]:
    """The architecture keys a config.json lacks, each with what it means."""
    return [f"{key} ({what})" for key, what in REQUIRED_CONFIG_KEYS.items() if key not in config]


def check_config_fits_weights(folder: Path, source: str) -> None:
    """config.json against the tensor shapes of model.safetensors, from its header alone (no tensor is read)."""
    import json

    from .io import read_safetensors_header

    config_path, weights = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    try:
        config = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ConfigError(f"encoder = {source}: {config_path} is not readable JSON ({err})") from err
    if not isinstance(config, dict):
        raise ConfigError(f"encoder = {source}: {config_path} is not a JSON object")
    missing = missing_config_keys(config)
    if missing:
        raise ConfigError(f"encoder = {source}: {config_path} lacks {', '.join(missing)}")
    if not weights.is_file():  # a Hub snapshot with .bin weights: the training job checks them as it loads them
        return
    try:
        header, _ = read_safetensors_header(weights)
    except (OSError, ValueError) as err:
        raise ConfigError(f"encoder = {source}: {err}") from err
    shapes = {key.removeprefix("model."): list(info.get("shape", [])) for key, info in header.items()
              if key != "__metadata__" and isinstance(info, dict)}
    problems = shape_mismatches(config, shapes)
    if problems:
        raise ConfigError(f"encoder = {source}: {config_path.name} does not fit {weights.name}: " + "; ".join(problems))


def shape_mismatches(config: dict, shapes: dict[str, list[int]]) -> list[str]:
    """What in `config` (Hub config.json keys) disagrees with the weights' shapes (Hub names without `model.`)."""
    problems = []
    d, depth, heads = config["embed_dim"], config["depth"], config["num_heads"]
    if isinstance(heads, int) and isinstance(d, int) and (heads < 1 or d % heads):
        problems.append(f"embed_dim {d} is not a multiple of num_heads {heads}")

    def expect(key: str, wanted: list, what: str) -> None:
        """wanted: the expected shape, None where the config does not say."""
        got = shapes.get(key)
        if got is not None and (len(got) != len(wanted) or any(w is not None and w != g for w, g in zip(wanted, got))):
            shown = "[" + ", ".join("*" if w is None else str(w) for w in wanted) + "]"
            problems.append(f"{what} gives {key} {shown}, the weights hold {got}")

    patch, chans = config.get("patch_size"), config.get("in_chans")
    expect("extra_tokens", [1, 1, d], f"embed_dim {d}")
    expect("local_encoder.proj.weight", [d, chans, patch, patch], "embed_dim, in_chans, patch_size")
    if all(k in config for k in ("max_length", "mel_bins", "patch_size")) and config["patch_size"]:
        n = config["max_length"] * (config["mel_bins"] // config["patch_size"])
        expect("fixed_positional_encoder.positions", [1, n, d], "max_length, mel_bins, patch_size, embed_dim")
    else:
        expect("fixed_positional_encoder.positions", [1, None, d], f"embed_dim {d}")
    blocks = sorted({int(k.split(".")[1]) for k in shapes if k.startswith("blocks.") and k.split(".")[1].isdigit()})
    if blocks != list(range(depth if isinstance(depth, int) else -1)):
        problems.append(f"depth {depth}, the weights hold {len(blocks)} block(s)"
                        + (f" numbered {blocks[0]}..{blocks[-1]}" if blocks else ""))
    hidden = int(config["mlp_ratio"] * d) if isinstance(config.get("mlp_ratio"), (int, float)) and isinstance(d, int) else None
    for i in blocks:
        expect(f"blocks.{i}.attn.qkv.weight", [3 * d, d], f"embed_dim {d}")
        expect(f"blocks.{i}.attn.proj.weight", [d, d], f"embed_dim {d}")
        expect(f"blocks.{i}.mlp.fc1.weight", [hidden, d], "embed_dim, mlp_ratio")
        expect(f"blocks.{i}.mlp.fc2.weight", [d, hidden], "embed_dim, mlp_ratio")
    return problems


def hub_origin(folder: str | os.PathLike) -> tuple[str | None, str | None]:
    """(Hub id, commit) a local encoder folder came from, where it tells: a Hugging Face cache snapshot
    (.../models--owner--name/snapshots/<commit>), or a config.json naming a Hub id (`_name_or_path`,
    commit unknown); else (None, None)."""
    import json

    folder = Path(folder).resolve()
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
        repo = folder.parent.parent.name[len("models--"):].replace("--", "/", 1)
        if is_hub_id(repo):
            return repo, folder.name
    try:
        name = json.loads((folder / CONFIG_FILE).read_text()).get("_name_or_path")
    except (OSError, ValueError, AttributeError):
        name = None
    if isinstance(name, str) and is_hub_id(name) and not Path(name).exists():
        return name, None
    return None, None


def hub_cache_folder(repo_id: str) -> Path | None:
    """The cached snapshot of a Hub model holding config.json and weights, if there is one."""
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(repo_id, CONFIG_FILE)
    if not isinstance(config, str):  # None, or a marker that the file is known not to exist
        return None
    folder = Path(config).parent
    return folder if any(folder.glob("*.safetensors")) or any(folder.glob("*.bin")) else None
