"""Saved encoders as Hugging Face models: the modeling file written beside the weights and the
config.json entries that point transformers to it. Only source text is read here (no torch,
no transformers); the model classes and their registration are in hf_modeling.py.
"""

from __future__ import annotations

from pathlib import Path

from .layout import MODELING_FILE

_MODULE = Path(MODELING_FILE).stem
HF_CONFIG = {"auto_map": {"AutoConfig": f"{_MODULE}.EATHubConfig", "AutoModel": f"{_MODULE}.EATModel"}}
_HERE = Path(__file__).parent


def _lines_before(path: Path, marker: str) -> list[str]:
    """The lines of a file up to the first separator comment `# --- ... <marker>`."""
    lines = path.read_text().splitlines(keepends=True)
    end = next((i for i, line in enumerate(lines) if line.startswith("# ---") and line.rstrip().endswith(marker)), None)
    if end is None:
        raise RuntimeError(f"{path}: no '# --- {marker}' separator")
    return lines[:end]


def modeling_source() -> str:
    """modeling_eat.py: eat.py's model code, then hf_modeling.py's classes, without the package imports."""
    model_code = [line for line in _lines_before(_HERE / "eat.py", " checkpoints") if not line.startswith("from .")]
    wrapper = [line for line in _lines_before(_HERE / "hf_modeling.py", "registration (not exported)")
               if not line.startswith(("from .", "from __future__"))]
    return ("# Written by eat-asd: the EAT encoder (model code of eat_asd/eat.py) as a transformers model.\n"
            + "".join(model_code) + "\n\n# " + "-" * 70 + " transformers\n" + "".join(wrapper))


def write_modeling_file(directory: str | Path) -> Path:
    from .io import write_text

    path = Path(directory) / MODELING_FILE
    write_text(path, modeling_source())
    return path
