"""bf16 matrix products where the hardware has bf16 units, and only for the layers where they pay.

``TrainConfig.precision``: ``"fp32"`` (the default: a run's numbers do not depend on the machine), ``"bf16"`` or
``"auto"`` (bf16 where this device has bf16 units and the model has a wide layer, else fp32). With bf16, the weights,
the optimizer state, the checkpoints, the loss and the small products stay fp32; only the products of *wide*
layers (both widths at least :data:`WIDE`) take bf16 operands, accumulated in fp32 inside the kernel and rounded
to bf16 on the way out. Measured on 2 AMD EPYC (Zen 4, AVX512-BF16) cores, torch 2.13, the chapter's shapes with a
batch of 128: the four 784x256 products run 1.9-2.3x faster in bf16, the k=32 ones 1.2-1.5x slower, hence the rule.

On the hand-derived gradient path (:mod:`aekit.mlpgrad`) each wide weight gets a bf16 copy once per step, used by
its forward product and both backward ones. On the autograd path the wide layers run under ``torch.autocast``
(entered and left around each of them by forward hooks); on CUDA the whole forward runs under autocast.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from torch import nn

from ..configs import PRECISIONS
from ..errors import ConfigError

WIDE = 256  # a layer whose in- and out-widths are both at least this takes bf16 products
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo: AMX tiles with bf16, or AVX-512 bf16 dot products


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (Linux); empty elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((line for line in text.splitlines() if line.startswith(("flags", "Features"))), "")
    return set(line.split(":", 1)[-1].split())


def bf16_missing(device: torch.device) -> str | None:
    """Why bf16 products would not pay on ``device`` (what it lacks), or None when they can."""
    if device.type == "cuda":
        return None if torch.cuda.is_bf16_supported() else "this GPU has no bf16 units (compute capability 8.0+)"
    if device.type == "cpu":
        if set(CPU_BF16_FLAGS) & cpu_flags():
            return None
        return "this CPU has neither AMX-BF16 (amx_bf16) nor AVX512-BF16 (avx512_bf16) bf16 matrix instructions"
    return f"bf16 training is not offered on {device.type}"


def is_wide(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) and min(module.in_features, module.out_features) >= WIDE


def check(precision: str, device: torch.device) -> str | None:
    """Refuse an unknown precision, or ``"bf16"`` on a device without bf16 units (naming what it lacks); returns
    what the device lacks for bf16 (None: nothing)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {list(PRECISIONS)}")
    missing = bf16_missing(device)
    if precision == "bf16" and missing:
        raise ConfigError(f"precision 'bf16' was asked for, but {missing}; use --precision fp32 (or auto)")
    return missing


def resolve(precision: str, device: torch.device, model: nn.Module) -> str:
    """``"fp32"`` or ``"bf16"`` for this device and model; a ``"bf16"`` the device cannot do is a ConfigError."""
    missing = check(precision, device)
    if precision == "auto":
        wide = device.type == "cuda" or any(is_wide(m) for m in model.modules())
        return "bf16" if missing is None and wide else "fp32"
    return precision


@contextlib.contextmanager
def autocast_wide_layers(model: nn.Module, device: torch.device):
    """While active, every wide layer's forward (and so its backward) runs under bf16 autocast: the autograd path's
    bf16. On CUDA, the whole forward (the GPU's bf16 units pay for small products too)."""
    if device.type == "cuda":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            yield
        return
    contexts: dict[int, torch.autocast] = {}

    def enter(module, args):
        contexts[id(module)] = torch.autocast(device.type, dtype=torch.bfloat16)
        contexts[id(module)].__enter__()

    def leave(module, args, output):
        contexts.pop(id(module)).__exit__(None, None, None)
        return output.float()  # the next layer, the loss and the small products stay fp32

    handles = []
    for module in model.modules():
        if is_wide(module):
            handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
