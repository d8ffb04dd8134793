"""Drawing the next token: inverse-CDF sampling instead of ``torch.multinomial``.

Hugging Face's ``generate(do_sample=True)`` draws each token with ``torch.multinomial(probs, 1)``,
which on CPU draws one exponential variate per vocabulary entry (the "exponential race"). With
Gemma-3's 262,144-token vocabulary that is costly; the inverse CDF below needs one uniform variate
per row (how much faster it is: ``benchmarks/sampler.py``, results in ``benchmarks/README.md``).

Both draw exactly from the same distribution ``softmax(scores)``; they use the random stream
differently, so the samples (not their law) change with the choice. ``sampler = "multinomial"``
(:class:`fairl_lib.llm.models.GenSettings`, ``[rlhf]``) restores Hugging Face's draw.

How it plugs into ``generate``: :class:`InverseCDFSampler` is the last logits processor; it draws
the token and returns scores that are ``-inf`` everywhere except at the drawn token, and
``generate`` runs with ``do_sample=False``, whose argmax then picks exactly that token. Temperature,
top-k and top-p are applied before it by Hugging Face's own warpers, in ``generate``'s order.
"""
from __future__ import annotations

from typing import Any

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

BLOCK = 1024  # vocabulary entries per block of the two-level search


def inverse_cdf_sample(scores: torch.Tensor, generator: torch.Generator | None = None,
                       inplace: bool = False) -> torch.Tensor:
    """One token per row of ``scores (B, V)``, drawn from ``softmax(scores)``: ``(B,)`` int64.

    ``w = exp(scores - max)`` are the unnormalised probabilities; ``u ~ U[0, sum w)`` is drawn per
    row and the token is the first index whose cumulative weight exceeds ``u`` (so a token of
    weight 0, e.g. a suppressed one, is never drawn). The search is two-level, in float64: the
    sums of blocks of :data:`BLOCK` entries locate the block, a cumulative sum inside that one
    block locates the token, so no ``(B, V)`` float64 array is made. ``inplace`` overwrites
    ``scores`` with ``w`` (no ``(B, V)`` allocation at all; a first version that allocated three
    fresh 30-130 MB buffers per Gemma decoding step showed high system time on this VM). Rows of all
    ``-inf`` are an error, as they are for ``torch.multinomial``.
    """
    b, v = scores.shape
    w = scores if inplace else scores.to(torch.float32, copy=True)
    w.sub_(w.amax(-1, keepdim=True)).exp_()            # -inf - finite max -> weight 0
    nb, full = -(-v // BLOCK), (v // BLOCK) * BLOCK
    sums = w[:, :full].view(b, -1, BLOCK).sum(-1, dtype=torch.float64)
    if full < v:
        sums = torch.cat([sums, w[:, full:].sum(-1, keepdim=True, dtype=torch.float64)], 1)
    csum = sums.cumsum(-1)                                                   # (B, nb)
    total = csum[:, -1:]
    if not bool(torch.isfinite(total).all()) or bool((total <= 0).any()):
        raise ValueError("inverse_cdf_sample: a row of scores has no finite entry (nothing to sample).")
    u = torch.rand((b, 1), dtype=torch.float64, generator=generator, device=scores.device) * total
    blk = torch.searchsorted(csum, u, right=True).clamp_max(nb - 1)          # (B, 1) block of the token
    before = torch.where(blk > 0, csum.gather(1, (blk - 1).clamp_min(0)), torch.zeros_like(u))
    offs = blk * BLOCK + torch.arange(BLOCK, device=scores.device)           # (B, BLOCK) its columns
    inside = torch.where(offs < v, w.gather(1, offs.clamp_max(v - 1)).to(torch.float64), 0.0)
    pos = torch.searchsorted(inside.cumsum(-1), u - before, right=True)      # (B, 1)
    # rounding (block sum vs in-block cumsum) could step past the block's last positive weight
    last = BLOCK - 1 - (inside > 0).flip(-1).to(torch.int64).argmax(-1, keepdim=True)
    return (blk * BLOCK + torch.minimum(pos, last)).squeeze(-1)


class InverseCDFSampler(LogitsProcessor):
    """The last logits processor: draws the next token (:func:`inverse_cdf_sample`) and returns
    scores that let greedy decoding pick exactly it (0 there, ``-inf`` elsewhere), in place
    (``generate`` hands each step a fresh float32 copy of the logits)."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        token = inverse_cdf_sample(scores, inplace=scores.dtype == torch.float32)
        return scores.fill_(float("-inf")).scatter_(1, token[:, None], 0.0)


def sampling_processors(temperature: float, top_k: int, top_p: float) -> list[Any]:
    """Warpers (temperature, top-k, top-p; only the active ones) then :class:`InverseCDFSampler`."""
    out: list[Any] = []
    if temperature != 1.0:
        out.append(TemperatureLogitsWarper(temperature))
    if top_k and top_k > 0:
        out.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        out.append(TopPLogitsWarper(top_p))
    return out + [InverseCDFSampler()]


def generate_overrides(temperature: float, top_k: int, top_p: float) -> dict[str, Any]:
    """``generate`` keyword arguments that sample by inverse CDF: greedy decoding over the processors."""
    return {"do_sample": False, "temperature": None, "top_k": None, "top_p": None,
            "logits_processor": LogitsProcessorList(sampling_processors(temperature, top_k, top_p))}
