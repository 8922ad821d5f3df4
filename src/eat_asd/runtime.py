"""Where and in which precision the encoder runs: device choice, `precision: auto`, autocast.

torch is imported inside the functions, so that settings can be validated by light code.
"""

from __future__ import annotations

import contextlib
import functools
import os


@functools.cache
def _precisions() -> tuple[str, ...]:
    from .config import section_schema

    return tuple(section_schema("embedding")["properties"]["precision"]["enum"])


def check_precision(precision: str, name: str) -> None:
    """The settings classes check precision against the schema; this guards direct callers with the same choices."""
    choices = _precisions()
    if precision not in choices:
        raise ValueError(f"{name} = {precision!r}: choose one of {', '.join(choices)}")


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity: what a SLURM allocation or taskset leaves it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_device():
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_device(name=None):
    """A torch.device from a setting ('auto', 'cpu', 'cuda:1', ...), a device, or None (= auto)."""
    import torch

    if name is None or name == "auto":
        return default_device()
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"device = {name!r}: not a torch device (auto, cpu, cuda, cuda:N, mps)") from err


def cpu_has_bf16_units() -> bool:
    """True on CPUs that multiply bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slower."""
    import torch

    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_precision(precision: str, device, training: bool = False) -> str:
    """'float32' or 'bfloat16' for a setting on a device.

    auto: bf16 on CUDA; on CPUs with native bf16 units bf16 for inference only (EAT-base embeds about
    4x faster than in float32, and the demo's AUROC and official score moved by 0.002), while training
    stays float32 there (over 5 seeds of the demo, bf16 CPU training scored 0.029 lower, within the
    seeds' spread, and its gain in speed is smaller than inference's); float32 elsewhere (MPS, older CPUs).
    """
    check_precision(precision, "precision")
    if precision != "auto":
        return precision
    if device.type == "cuda" or (device.type == "cpu" and not training and cpu_has_bf16_units()):
        return "bfloat16"
    return "float32"


def autocast(device, precision: str, training: bool = False):
    """bf16 autocast when `precision` resolves to bfloat16 on `device`; float32 otherwise."""
    import torch

    if resolve_precision(precision, device, training) == "bfloat16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def inference_weights(model, device, precision: str):
    """The model to run inference with: on the CPU in bf16, a copy whose Linear and convolution weights
    are bf16 already, since autocast would otherwise convert them again on every forward pass (about
    7% of EAT-base's time per clip). Autocast then casts nothing else; the results are the same."""
    import copy

    import torch

    if device.type != "cpu" or resolve_precision(precision, device) != "bfloat16":
        return model
    fast = copy.deepcopy(model)
    for module in fast.modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            module.to(torch.bfloat16)
    return fast


def to_device(x, device):
    """Host-to-device copy; on CUDA from page-locked memory, so the copy overlaps with compute."""
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)
