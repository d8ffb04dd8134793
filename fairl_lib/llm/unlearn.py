"""Unlearning training rollouts: lower their likelihood, keep the model close to itself elsewhere (notebook 10).

Liu et al. ("Explainable RLHF", abstract) improve unsatisfactory responses "by unlearning the training
data that lead to these unsatisfactory responses and, meanwhile, [without significantly degrading]
satisfactory responses to other prompts". The abstract does not say how; our choice (:func:`unlearn`):

- **Forget term:** gradient *ascent* on the negative log-likelihood of the forget rollouts (the
  completion tokens given their prompt): each step lowers ``log pi(completion | prompt)`` of a
  minibatch of them. It targets exactly the data named by the explanation, needs no sampling and no
  reward, and costs one forward/backward pass on a fixed batch per step.
- **Anchor term:** ``kl_coef`` times the token-level KL(pi_ref || pi) over the full vocabulary, at the
  completion positions of *retain* rollouts (training rollouts on other prompts), ``pi_ref`` the model
  before unlearning (the expert). Gradient ascent alone is unbounded and degrades everything; the
  anchor spends the update only where the forget data differ from the rest, which is the abstract's
  "does not significantly degrade satisfactory responses to other prompts".
- **Not chosen:** RLOO with reversed advantages on the forget prompts. It would sample fresh completions
  (the expensive part of RLHF on CPU), its gradient depends on the samples rather than on the data to
  forget, and it unlearns *behaviour on prompts*, not the named training data.

Loss per step: ``mean_f (1/|c_f|) sum_t log pi(c_t | ...) + kl_coef * mean_tokens KL(pi_ref || pi)`` for
a forget minibatch ``f`` and a retain minibatch; Adam with a constant learning rate for a fixed small
number of steps. Minibatches are drawn by a seeded permutation (cycled), so the same inputs give the same
update. Only the top ``top_blocks`` transformer blocks and the final norm train (as in RLHF,
``rlhf.freeze_lower_blocks``); the frozen lower blocks are then shared with the reference model and run
once per distinct row (``fast.trunk.FrozenTrunk``). Logits are computed only at completion positions
(the LM head on the gathered hidden states), not over the whole sequence.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from fairl_lib.llm.fast.trunk import FrozenTrunk
from fairl_lib.llm.models import spec_of, encode, prompt_ids
from fairl_lib.llm.rlhf import freeze_lower_blocks

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class UnlearnSettings:
    """One unlearning run (the LM side of ``[audit]``; see the module docstring).

    Attributes:
        steps: optimiser steps.
        lr: Adam learning rate (constant).
        forget_batch: forget rollouts per step (the whole forget set if it is smaller).
        retain_batch: retain rollouts per step for the KL anchor (0 = no anchor).
        kl_coef: weight of the anchor.
        top_blocks: train only the top k transformer blocks + final norm (-1 = all parameters).
        max_prompt_tokens: prompts keep their last this many tokens (as in RLHF's training).
        max_grad_norm: gradient clipping.
        seed: seed of the minibatch order.
    """

    steps: int = 10
    lr: float = 2e-5
    forget_batch: int = 16
    retain_batch: int = 16
    kl_coef: float = 1.0
    top_blocks: int = 6
    max_prompt_tokens: int = 48
    max_grad_norm: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0 or self.forget_batch < 1 or self.retain_batch < 0 or self.lr <= 0 or self.kl_coef < 0:
            raise ValueError("unlearning needs steps >= 0, forget_batch >= 1, retain_batch >= 0, lr > 0, kl_coef >= 0")


def _rows(tok: PreTrainedTokenizerBase, prompts: Sequence[str], completions: Sequence[str], spec,
          max_prompt_tokens: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``(input_ids, attention_mask, target_mask)``: prompt (truncated as in training) +
    completion tokens; ``target_mask[i, t]`` marks the positions whose *next* token is a completion token."""
    import torch

    p_ids = prompt_ids(tok, prompts, spec, max_prompt_tokens) if max_prompt_tokens > 0 else encode(tok, prompts, spec)
    c_ids = tok(list(completions), add_special_tokens=False)["input_ids"]
    seqs = [p + c for p, c in zip(p_ids, c_ids)]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    target = torch.zeros((len(seqs), width), dtype=torch.bool)
    for i, (p, s) in enumerate(zip(p_ids, seqs)):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
        target[i, len(p) - 1 : len(s) - 1] = True  # position t predicts token t + 1
    return ids, mask, target


def _completion_logits(model: PreTrainedModel, ids: torch.Tensor, mask: torch.Tensor,
                       target: torch.Tensor) -> torch.Tensor:
    """``(n_target_positions, vocab)`` logits at the marked positions (the LM head runs on those only)."""
    hidden = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
    logits = model.get_output_embeddings()(hidden[target])
    cap = getattr(model.config, "final_logit_softcapping", None)
    return cap * (logits / cap).tanh() if cap else logits.float()


def sequence_logprobs(model: PreTrainedModel, tok: PreTrainedTokenizerBase, prompts: Sequence[str],
                      completions: Sequence[str], max_prompt_tokens: int = 48, batch_size: int = 16,
                      spec=None) -> tuple[np.ndarray, np.ndarray]:
    """``(sum log pi(completion | prompt), completion tokens)`` per row, prompts truncated as in
    training (``max_prompt_tokens``). Rows without completion tokens get 0 and 0."""
    import torch

    spec = spec or spec_of(model)
    lp = np.zeros(len(prompts), dtype=np.float64)
    n = np.zeros(len(prompts), dtype=np.int64)
    was_training = model.training
    model.eval()
    try:
        for s in range(0, len(prompts), batch_size):
            ids, mask, target = _rows(tok, prompts[s:s + batch_size], completions[s:s + batch_size], spec,
                                      max_prompt_tokens)
            with torch.inference_mode():
                tok_lp = _token_logprobs(model, ids, mask, target)
            row = torch.nonzero(target)[:, 0]
            lp[s:s + len(ids)] = torch.zeros(len(ids), dtype=torch.float64).index_add_(0, row, tok_lp.double()).numpy()
            n[s:s + len(ids)] = target.sum(1).numpy()
    finally:
        model.train(was_training)
    return lp, n


def _token_logprobs(model, ids, mask, target):
    import torch

    logits = _completion_logits(model, ids, mask, target)
    nxt = torch.roll(ids, -1, dims=1)[target]
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, nxt[:, None]).squeeze(-1)


def _minibatches(n: int, size: int, steps: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``steps`` index batches of ``min(size, n)`` rows, walking through seeded permutations (cycled)."""
    out, perm, pos = [], rng.permutation(n), 0
    size = min(size, n)
    for _ in range(steps):
        if pos + size > n:
            perm, pos = rng.permutation(n), 0
        out.append(np.sort(perm[pos:pos + size]))
        pos += size
    return out


def unlearn(model: PreTrainedModel, tok: PreTrainedTokenizerBase, forget: Sequence[tuple[str, str]],
            retain: Sequence[tuple[str, str]], settings: UnlearnSettings, spec=None,
            reference: PreTrainedModel | None = None, log: Any = None) -> list[dict[str, float]]:
    """Unlearn the ``forget`` rollouts (``(prompt, completion)`` text pairs) from ``model``, in place.

    Args:
        model: the LM to update (the expert); left in eval mode.
        forget: rollouts whose likelihood is lowered (gradient ascent on their NLL).
        retain: rollouts on other prompts where KL(reference || model) anchors the model.
        reference: the frozen anchor (default: a copy of ``model`` before the update).
        log: optional ``print``-like callable for one line per step.

    Returns:
        One dict per step: ``forget_logprob`` (mean per-token log-prob of the step's forget batch
        before its update), ``retain_kl`` (mean per-token KL, nats), ``loss``.
    """
    import torch

    if not forget:
        raise ValueError("unlearn needs at least one rollout to forget")
    spec = spec or spec_of(model)
    reference = reference if reference is not None else copy.deepcopy(model)
    reference.eval().requires_grad_(False)
    freeze_lower_blocks(model, settings.top_blocks)
    trunk = None
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is not None and settings.top_blocks >= 0 and len(layers) - settings.top_blocks > 0:
        rows = min(len(forget), settings.forget_batch * settings.steps) + settings.retain_batch * settings.steps
        trunk = FrozenTrunk(len(layers) - settings.top_blocks, capacity=min(rows, 2048))
        trunk.attach(model, [reference])
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=settings.lr)
    rng = np.random.default_rng(settings.seed)
    f_batches = _minibatches(len(forget), settings.forget_batch, settings.steps, rng)
    r_batches = (_minibatches(len(retain), settings.retain_batch, settings.steps, rng)
                 if retain and settings.retain_batch > 0 and settings.kl_coef > 0 else [None] * settings.steps)
    history = []
    ctx = trunk.active if trunk is not None else _nullcontext
    model.train()
    try:
        for step, (fb, rb) in enumerate(zip(f_batches, r_batches), start=1):
            with ctx():
                ids, mask, target = _rows(tok, [forget[i][0] for i in fb], [forget[i][1] for i in fb], spec,
                                          settings.max_prompt_tokens)
                tok_lp = _token_logprobs(model, ids, mask, target)
                row = torch.nonzero(target)[:, 0]
                n_tok = target.sum(1).clamp(min=1).to(tok_lp.dtype)
                per_row = torch.zeros(len(ids), dtype=tok_lp.dtype).index_add(0, row, tok_lp) / n_tok
                has = target.any(1)
                forget_lp = per_row[has].mean() if has.any() else per_row.sum() * 0
                loss = forget_lp
                kl_val = math.nan
                if rb is not None:
                    r_ids, r_mask, r_target = _rows(tok, [retain[i][0] for i in rb], [retain[i][1] for i in rb],
                                                    spec, settings.max_prompt_tokens)
                    if r_target.any():
                        with torch.no_grad():
                            ref_lp = torch.log_softmax(_completion_logits(reference, r_ids, r_mask, r_target).float(), -1)
                        cur_lp = torch.log_softmax(_completion_logits(model, r_ids, r_mask, r_target).float(), -1)
                        kl = (ref_lp.exp() * (ref_lp - cur_lp)).sum(-1).mean()
                        loss = loss + settings.kl_coef * kl
                        kl_val = float(kl.detach())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if settings.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
            opt.step()
            row_out = {"step": step, "forget_logprob": float(forget_lp.detach()), "retain_kl": kl_val,
                       "loss": float(loss.detach())}
            history.append(row_out)
            if log is not None:
                log(f"[unlearn] step {step}/{settings.steps}: forget log-prob/token {row_out['forget_logprob']:.3f}, "
                    f"retain KL/token {kl_val:.4f}")
    finally:
        model.eval()
    return history


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
