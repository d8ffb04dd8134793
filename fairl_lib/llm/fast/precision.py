"""Numeric precision of the language models' forward passes: fp32, or bf16 autocast where the CPU has it.

On a CPU with AVX-512-BF16 (or AMX-BF16) the GEMMs of SmolLM2 / Gemma-3 run faster in
bfloat16 than in fp32, so RLHF steps and batched generation get cheaper (how much:
``benchmarks/README.md``). ``torch.autocast("cpu", dtype=torch.bfloat16)`` runs the matrix products in
bf16 while the weights, the optimiser state, the residual stream's additions, the norms and the
log-softmax stay in fp32 (autocast's fp32 op list). On a CPU without bf16 instructions bf16 GEMMs are
emulated and slower than fp32, so ``"auto"`` picks bf16 only where the flags say the CPU has them.

The cost is rounding: a completion's log-probability differs slightly from the fp32 one (the measured
spread is in ``benchmarks/README.md``; ``tests/test_precision.py`` bounds it per token); samples drawn
under bf16 are other samples from nearly the same distribution. Which precision ran is part of every stage key that depends on it
(a bf16 result is never read back as an fp32 one) and is written in the receipts.
"""
from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Any

PRECISIONS = ("fp32", "bf16", "auto")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def _cpuinfo(field: str) -> str:
    """The first ``field`` line of /proc/cpuinfo, its value ("" where the file or field is missing)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    return next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith(field)), "")


def cpu_flags() -> frozenset[str]:
    """The CPU feature flags Linux reports (empty where /proc/cpuinfo is missing)."""
    return frozenset(_cpuinfo("flags").split())


def cpu_model() -> str:
    """The CPU's model name as Linux reports it ("" where unknown)."""
    return _cpuinfo("model name")


def cpu_has_bf16() -> bool:
    """True when the CPU computes bf16 dot products natively (AVX-512-BF16 or AMX-BF16)."""
    return any(flag in cpu_flags() for flag in BF16_FLAGS)


def check_precision(name: str) -> None:
    if name not in PRECISIONS:
        raise ValueError(f"Unknown precision {name!r}. Valid: {', '.join(PRECISIONS)}.")


def resolve_precision(name: str) -> str:
    """``"auto"`` -> ``"bf16"`` on a CPU with native bf16, else ``"fp32"``; other names unchanged."""
    check_precision(name)
    if name == "auto":
        return "bf16" if cpu_has_bf16() else "fp32"
    return name


def autocast(precision: str) -> Any:
    """A context in which the LM's forward passes run at ``precision`` (``"fp32"``: nothing changes).

    Autocast's weight cache is off: it keeps the bf16 copy of every trainable weight until the
    outermost autocast block ends, and an RLHF run's block spans all its optimiser steps, so with the
    cache every training forward would use the weights of step 0 (the policy's log-probs would stay
    at the reference's and the KL term would read about 0 while the policy drifts).
    """
    precision = resolve_precision(precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False)


@contextlib.contextmanager
def bf16_weights(model: Any, precision: str) -> Any:
    """While the weights cannot change (generation), hold each ``nn.Linear`` weight as a bf16 copy.

    Under autocast (cache off, see :func:`autocast`) every forward pass casts every fp32 weight to bf16
    again: one cast per generated token, a large share of a decoding step (the 49k- and 262k-token
    output layers most of all; ``benchmarks/README.md``). The copies made here are what autocast would
    make, so the outputs are bit-identical; they are dropped on exit and the model's own fp32
    ``Parameter`` objects (which an optimiser may hold) are put back. Only the linear layers' weights:
    an embedding lookup is not autocast, so an output layer tied to the embedding gets its own copy
    and the lookup keeps reading fp32. Does nothing unless ``precision`` resolves to bf16.
    """
    if resolve_precision(precision) != "bf16":
        yield model
        return
    import torch

    swapped = []
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear) and module.weight.dtype == torch.float32:
                original = module.weight
                module.weight = torch.nn.Parameter(original.detach().to(torch.bfloat16), requires_grad=False)
                swapped.append((module, original))
    try:
        yield model
    finally:
        for module, original in swapped:
            module.weight = original


def full_precision() -> Any:
    """A context that turns autocast off again: rewards, scorers and embedders called from inside an
    autocast RLHF step compute in fp32, exactly as they do outside it."""
    import torch

    return torch.autocast("cpu", enabled=False)
