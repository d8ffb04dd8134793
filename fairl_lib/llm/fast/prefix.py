"""Shared-prompt prefill: encode each distinct prompt of a generation batch once.

Every batch this project samples repeats its prompts: the pairs stage draws
``pairs.completions_per_prompt`` (5) completions of each prompt from the base and from the expert,
an RLOO step ``generations_per_prompt`` (4), the held-out evaluation 2. ``model.generate`` runs the
prompt (prefill) once per *row*. :func:`generate_shared_prefix` runs the prefill once per distinct
prompt, copies its key/value cache to the rows that repeat it, and lets ``generate`` continue from
there. It saves time when a prompt repeats several times and the output layer is small (a large
vocabulary's output layer at every decoding step dominates otherwise): ``benchmarks/prefix.py``,
results in ``benchmarks/README.md``.

The result is the same computation: row ``i``'s cache holds the keys and values of its own prompt
(left padding and positions as ``generate`` makes them); only the floating-point rounding of the
prefill can differ (a batch of other shape), so greedy continuations are identical and sampled ones
follow the same law (``tests/test_prefix.py``). ``GenSettings.share_prefix`` / ``[rlhf]
share_prefix`` turn it off.

Rows count as repeats only when they are adjacent and equal (ids and mask): callers keep the copies
of a prompt together (``expert.generate_sorted`` sorts by prompt; trl's RLOO repeats each prompt
``num_generations`` times in a row).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def distinct_rows(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(first, groups)``: the first row of each run of adjacent equal rows (ids and mask), as a
    boolean mask, and each row's group index among those runs (``torch.unique_consecutive``)."""
    rows = torch.cat([input_ids, attention_mask], -1)
    if rows.shape[0] == 0:
        return torch.zeros(0, dtype=torch.bool), torch.zeros(0, dtype=torch.long)
    _, groups = torch.unique_consecutive(rows, dim=0, return_inverse=True)
    first = torch.ones(len(groups), dtype=torch.bool)
    first[1:] = groups[1:] != groups[:-1]
    return first, groups


def repeat_groups(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's first copy among the distinct rows: ``(B,)`` int64, non-decreasing.

    Rows ``i`` and ``i - 1`` are one group when their ids and masks are equal; e.g. rows
    ``[a, a, b, a]`` give ``[0, 0, 1, 2]`` (a prompt that comes back later starts a new group).
    """
    return distinct_rows(input_ids, attention_mask)[1]


def prefill_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids of a left-padded batch, as ``generate`` builds them (``cumsum - 1``, 1 at pads)."""
    pos = attention_mask.long().cumsum(-1) - 1
    return pos.masked_fill(attention_mask == 0, 1)


def shared_cache(module, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                 rows: torch.Tensor, **kwargs: Any):
    """Run ``module`` once over distinct prefixes into a fresh ``DynamicCache``, then copy the cache's
    rows to the batch: row ``i`` gets the keys and values of prefix ``rows[i]``. Returns
    ``(output, cache)``; ``output`` is the module's output over the distinct prefixes. The one place
    where a prompt runs once for the rows that repeat it (generation, the frozen trunk, the NLL)."""
    from transformers import DynamicCache

    cache = DynamicCache(config=module.config)
    out = module(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                 past_key_values=cache, use_cache=True, **kwargs)
    cache.batch_select_indices(rows.to(input_ids.device))
    return out, cache


def generate_shared_prefix(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                           generate: Callable[..., Any] | None = None, **kwargs: Any):
    """``model.generate(input_ids=..., attention_mask=..., **kwargs)`` with one prefill per distinct prompt.

    All prompt tokens but the last are run once per group of adjacent equal rows
    (:func:`repeat_groups`) into a ``DynamicCache``, whose rows are then copied to the batch's rows;
    ``generate`` takes that cache and processes only the last prompt token before decoding. When no
    row repeats, or the prompts are one token long, or the caller passes its own cache, this is
    plain ``model.generate``. ``generate`` replaces ``model.generate`` (e.g. the original method
    when ``model.generate`` itself is wrapped to call this function).
    """
    generate = generate or model.generate
    first, groups = distinct_rows(input_ids, attention_mask)
    if bool(first.all()) or input_ids.shape[1] < 2 or "past_key_values" in kwargs:
        return generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    ids, mask = input_ids[first, :-1], attention_mask[first, :-1]
    with torch.no_grad():
        _, cache = shared_cache(model, ids, mask, prefill_positions(mask), groups, logits_to_keep=1)
    return generate(input_ids=input_ids, attention_mask=attention_mask, past_key_values=cache, **kwargs)
