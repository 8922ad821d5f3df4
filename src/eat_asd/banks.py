"""Which normal training clips form each memory bank, and how many neighbours a bank can give.
Plain Python, so that planning checks `scoring.k` against the banks scoring will build."""

from __future__ import annotations

from typing import Sequence

from .data import DOMAINS
MIN_THRESHOLD_CLIPS = 3  # finite training scores the gamma fit of the decision threshold needs


def bank_group(section: str, bank_split: str) -> str:
    """The bank group a clip of this section is scored in: its section, or one group for the machine type."""
    return str(section) if bank_split == "section" else "all"


def memory_banks(sections: Sequence[str], domains: Sequence[str], bank_split: str,
                 domain_strategy: str) -> dict[str, list[list[int]]]:
    """Bank group -> the banks its clips are scored against (score = min over them), each as
    positions into the given training clips. `min` keeps a bank per domain where the group has
    source or target clips, else the group's clips form one bank."""
    groups: dict[str, list[int]] = {}
    for i, section in enumerate(sections):
        groups.setdefault(bank_group(section, bank_split), []).append(i)
    banks = {}
    for group, idx in groups.items():
        by_domain = [[i for i in idx if domains[i] == d] for d in DOMAINS] if domain_strategy == "min" else []
        banks[group] = [b for b in by_domain if b] or [idx]
    return banks


def usable_k(k: int, bank_size: int, leave_one_out: bool = False) -> int:
    """The neighbours a bank can give: fewer than k when it is small, one fewer when a clip is
    scored against the rest of its own bank (the training scores the threshold is fitted on)."""
    return min(k, bank_size - int(leave_one_out))
