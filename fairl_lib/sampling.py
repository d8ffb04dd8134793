"""Drawing the next token: inverse-CDF sampling instead of ``torch.multinomial``.

Hugging Face's ``generate(do_sample=True)`` draws each token with ``torch.multinomial(probs, 1)``,
which on CPU draws one exponential variate per vocabulary entry (the "exponential race"). With
Gemma-3's 262,144-token vocabulary that is the largest single cost of a decoding step: measured on
2 idle cores, 374 ms for a batch of 64 (SmolLM2's 49,152 tokens: 68 ms), against 78 ms (4.5 ms)
for the inverse CDF below, which needs one uniform variate per row (``benchmarks/README.md``).

Both draw exactly from the same distribution ``softmax(scores)``; they use the random stream
differently, so the samples (not their law) change with the choice. ``sampler = "multinomial"``
(:class:`fairl_lib.models.GenSettings`, ``[rlhf]``) restores Hugging Face's draw.

How it plugs into ``generate``: :class:`InverseCDFSampler` is the last logits processor; it draws
the token and returns scores that are ``-inf`` everywhere except at the drawn token, and
``generate`` runs with ``do_sample=False``, whose argmax then picks exactly that token. Temperature,
top-k and top-p are applied before it by Hugging Face's own warpers, in ``generate``'s order.
"""
from __future__ import annotations

from typing import Any

import torch
from transformers import (LogitsProcessor, LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper,
                          TopPLogitsWarper)

def inverse_cdf_sample(scores: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of ``scores (B, V)``, drawn from ``softmax(scores)``: ``(B,)`` int64.

    The cumulative probabilities are summed in float64 (rounding error ~1e-16 per entry, far below
    any float32 probability), ``u ~ U[0, total)`` is drawn per row, and the token is the first
    index whose cumulative sum exceeds ``u`` (so a token of probability 0, e.g. a suppressed one,
    is never drawn). Rows of all ``-inf`` are an error, as they are for ``torch.multinomial``.
    """
    probs = torch.softmax(scores.float(), dim=-1)
    cdf = probs.cumsum(-1, dtype=torch.float64)
    total = cdf[:, -1:]
    if not bool(torch.isfinite(total).all()) or bool((total <= 0).any()):
        raise ValueError("inverse_cdf_sample: a row of scores has no finite entry (nothing to sample).")
    u = torch.rand(total.shape, dtype=torch.float64, generator=generator, device=scores.device) * total
    return torch.searchsorted(cdf, u, right=True).clamp_max(scores.shape[-1] - 1).squeeze(-1)


class InverseCDFSampler(LogitsProcessor):
    """The last logits processor: draws the next token (:func:`inverse_cdf_sample`) and returns
    scores that let greedy decoding pick exactly it (0 there, ``-inf`` elsewhere)."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        token = inverse_cdf_sample(scores)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, token[:, None], 0.0)


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
