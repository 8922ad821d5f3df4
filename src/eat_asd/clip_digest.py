"""Content digests of a machine type's clips, worked out at planning time.

Snakemake decides staleness from modification times, but `rsync -a`, `cp -p` and `tar x`
replace a clip's content and keep its time. The workflow passes each machine type's digest to its
manifest job as a param, so changed content reruns that machine type's jobs. Hashing every clip
at every planning would be slow, so hashes are cached under a key of everything the filesystem
changes when content is written (size, mtime, ctime, inode): only clips whose key changed are
read again, and a clip whose bytes are the same keeps its digest (a moved or copied dataset
does not rerun anything).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from .io import content_hash, write_json

log = logging.getLogger(__name__)


def _stat_key(path: str) -> str:
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"


class ClipHashes:
    """Per-clip content hashes, cached in a JSON file keyed by path and stat key."""

    def __init__(self, cache_path: str | Path):
        self.cache_path = Path(cache_path)
        self.entries: dict[str, list[str]] = {}
        if self.cache_path.is_file():
            try:
                self.entries = json.loads(self.cache_path.read_text())
            except (OSError, ValueError):
                log.warning("%s: unreadable clip hash cache, hashing the clips again", self.cache_path)
        self.changed = False

    def hash(self, path: str) -> str:
        key = _stat_key(path)
        cached = self.entries.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        digest = content_hash(path)
        self.entries[path] = [key, digest]
        self.changed = True
        return digest

    def digest(self, paths: list[str], root: str | Path) -> str:
        """One digest over the contents of `paths` and their names relative to `root` (order-independent)."""
        h = hashlib.sha1()
        for path in sorted(paths):
            h.update(f"{os.path.relpath(path, root)}\0{self.hash(path)}\n".encode())
        return h.hexdigest()

    def save(self) -> None:
        if self.changed:
            write_json(self.cache_path, self.entries)
            self.changed = False
