"""The embeddings file of a machine type (NumPy .npz): one row per clip, the clip's key and role, and
the precision the encoder ran in. The embed job writes it, the score jobs read it (NumPy only)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .io import atomic_path, discard_damaged, npz_damage

ROLES = ("bank", "supplemental", "test")  # a training normal, a supplemental machine recording, a test clip


@dataclass
class EmbeddingsFile:
    embeddings: np.ndarray  # (clips, width), float32
    keys: np.ndarray  # the clips' manifest keys
    roles: np.ndarray  # one of ROLES per clip
    precision: str | None  # what the encoder ran in (None in files written before it was recorded)
    path: str | None = None  # the file it was read from

    def __post_init__(self):
        self.keys, self.roles = np.asarray(self.keys, dtype=str), np.asarray(self.roles, dtype=str)
        unknown = sorted(set(self.roles) - set(ROLES))
        if unknown:
            raise ValueError(f"embedding roles {unknown}: expected {ROLES}")

    def write(self, path: str | Path) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, embeddings=self.embeddings.astype(np.float32), keys=self.keys, roles=self.roles,
                     precision=np.array(self.precision or ""))

    @classmethod
    def read(cls, path: str | Path) -> "EmbeddingsFile":
        """The file's contents; a file cut short or corrupted is named, removed (so that the next run makes
        it again) and raised as DamagedFileError."""
        damage = npz_damage(path)
        if damage is None:
            try:
                with np.load(path) as z:
                    emb, keys, roles = z["embeddings"], z["keys"], z["roles"]
                    precision = str(z["precision"]) if "precision" in z.files else None
                if not len(emb) == len(keys) == len(roles):
                    damage = f"{len(emb)} embeddings, {len(keys)} keys and {len(roles)} roles"
            except (OSError, ValueError, KeyError, EOFError) as err:
                if isinstance(err, FileNotFoundError):
                    raise
                damage = f"not a readable embeddings file ({type(err).__name__}: {err})"
        if damage:
            raise discard_damaged(path, damage)
        return cls(emb, keys, roles, precision or None, str(path))
