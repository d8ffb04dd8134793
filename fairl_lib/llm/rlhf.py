"""RLHF: align a base LM pi_0 to any text reward (the expert pi_E of notebook 01, re-RLHF of notebook 08).

Paper, Section 5 ("Models and Expert Alignment via RLHF"): the expert is trained with PPO and a KL
penalty against the frozen base model, on RealToxicityPrompts prompts, with the ground-truth
toxicity classifier as reward; Section 6 / Figure 3c re-run RLHF with the rewards recovered by IRL.
:func:`train_policy` does both: it takes ANY reward callable ``reward_fn(list[str]) -> list[float]``
over completion texts (a classifier reward, or an IRL reward over frozen embeddings), and never
imports the IRL code.

Two algorithms (``RLHFConfig.algorithm``), both maximising ``E[r(o)] - beta * KL(pi || pi_0)``:

- ``"ppo"`` (the paper's): trl's PPO (``trl.experimental.ppo``, trl 0.29-1.12) with a value model
  (the base LM with a scalar head) and the reward as a token-level terminal reward. trl's PPO wants
  the reward as an ``nn.Module`` that reads the *policy's* token ids; :class:`TextRewardModule`
  wraps any text reward that way (decode the response tokens, call ``reward_fn``). trl's PPO cannot
  resume from checkpoints (it restarts at step 0), so a killed PPO run starts again.
- ``"rloo"`` (the cpu/smoke profiles): trl's ``RLOOTrainer`` (REINFORCE with a leave-one-out
  baseline over ``generations_per_prompt`` samples per prompt; reward minus ``beta`` x the
  sequence KL to the reference). It takes the reward callable directly and needs no value model.
  On CPU an RLOO step is cheaper than a PPO step (no value model) and detoxifies at least as fast
  per unit of time (``benchmarks/rlhf_step.py``, results in ``benchmarks/README.md``), so the cpu
  profile's budget fits an expert and the re-RLHF runs; RLOO optimises the same KL-regularised
  objective.

CPU choices: fp32, or bf16 autocast where the CPU has native bf16 (``precision``,
:mod:`fairl_lib.llm.fast.precision`; RLOO only, trl's PPO stays fp32), no gradient checkpointing,
constant learning rate, and optionally only the top ``trainable_top_blocks`` transformer blocks plus
the final norm are trained (embeddings and the tied output head stay frozen), which halves the
backward pass.

This module holds no speed-up of its own: the RLOO step is trl's ``RLOOTrainer`` unless the settings
ask for one of the speed-ups of :mod:`fairl_lib.llm.fast` (:func:`wants_fast_step`: the inverse-CDF
sampler, one prefill per prompt, bf16, or a switch of ``RLHFConfig.fast``); then it is the fast step
:func:`fairl_lib.llm.fast.rloo.fast_rloo_trainer_class`, tested equal to trl's own step over several
steps (``tests/test_fast_rloo.py``).

Output folder (``out_dir``): ``policy/`` (the aligned model, loadable with ``models.load_lm``),
``history.csv``, ``rlhf.json`` (settings and timings, written last: its presence means "complete").
``checkpoints/`` holds trl checkpoints while training (every ``save_steps``) so a killed RLOO run
resumes; it is deleted at the end. ``rollouts.jsonl`` (:class:`RolloutLog`, :func:`load_rollouts`)
records every training rollout: step, prompt, completion and reward, as text (the training data that
notebook 10 audits).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fairl_lib.artifacts import atomic_write_text
from fairl_lib.llm.models import (
    GenSettings,
    _threads,
    check_sampler,
    generate,
    generation_kwargs,
    load_lm,
    prompt_ids,
    save_lm,
    suppressed_token_ids,
)
from fairl_lib.llm.fast.precision import full_precision, resolve_precision
from fairl_lib.llm.fast.rloo import FastRLOOSettings, fast_rloo_trainer_class
from fairl_lib.llm.progress import Progress, emit

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

RewardFn = Callable[[list[str]], Sequence[float]]
EvalFn = Callable[[list[str]], "dict[str, float] | float"]
ALGORITHMS = ("rloo", "ppo")
DONE_FILE = "rlhf.json"
ROLLOUTS_FILE = "rollouts.jsonl"


@dataclass(frozen=True)
class RLHFConfig:
    """Settings of one RLHF run (profile section ``[rlhf]``). Defaults follow the paper where it says.

    Attributes:
        algorithm: ``"ppo"`` (paper, Sec. 5) or ``"rloo"`` (cpu/smoke: cheaper per step on CPU,
            same KL-regularised objective; see the module docstring).
        steps: optimiser steps (one batch of fresh completions each).
        prompts_per_step: distinct prompts per step.
        generations_per_prompt: completions sampled per prompt (RLOO's leave-one-out group, >= 2).
            PPO uses ``prompts_per_step * generations_per_prompt`` distinct prompts, one sample
            each, so both see the same number of completions per step.
        lr: Adam learning rate (constant, no warm-up).
        beta: KL coefficient: reward - beta * KL(pi || pi_0), KL summed over completion tokens.
        max_new_tokens: completion length during training (and evaluation).
        temperature: sampling temperature of training rollouts (1.0 = on-policy samples).
        top_k: top-k of training rollouts (0 = off; pure sampling keeps the KL estimate unbiased).
        top_p: nucleus mass of training rollouts (1.0 = off).
        max_prompt_tokens: prompts keep their last this many tokens (PPO pads every prompt to
            exactly this length).
        trainable_top_blocks: train only the top k transformer blocks + final norm (-1 = all
            parameters, as in standard full fine-tuning).
        max_grad_norm: gradient clipping.
        ppo_epochs: PPO epochs over each batch of rollouts.
        vf_coef: PPO value-loss coefficient.
        eval_every: evaluate ``eval_fn`` on the held-out prompts every this many steps (also at
            step 0 and at the end; 0 = only at the start and the end).
        eval_greedy: evaluate greedy completions instead of sampled ones (sampled: the policy's
            actual output distribution, with a fixed seed so every evaluation sees the same noise).
        eval_batch_size: prompts per generate() call during evaluation.
        save_steps: write a resumable trl checkpoint every this many steps (0 = never).
        seed: seed of prompt order, rollouts and evaluation samples.
        sampler: how rollout and evaluation tokens are drawn (RLOO and evaluation; trl's PPO keeps
            its own ``torch.multinomial``): ``"inverse_cdf"`` (:mod:`fairl_lib.llm.fast.sampling`) or
            ``"multinomial"``. The same distribution either way; the samples differ.
        share_prefix: RLOO rollouts and evaluation run each distinct prompt once and share its
            key/value cache among its ``generations_per_prompt`` rows (:mod:`fairl_lib.llm.fast.prefix`;
            same computation up to float rounding); so does the frozen trunk's pass over the rollouts
            (:meth:`fairl_lib.llm.fast.trunk.FrozenTrunk.shared_prefix`).
        precision: ``"fp32"``, ``"bf16"`` or ``"auto"`` (bf16 on a CPU with native bf16, resolved when
            the config is made): RLOO's rollouts, log-prob passes and evaluation run under bf16
            autocast; weights, gradients and Adam stay fp32 (:mod:`fairl_lib.llm.fast.precision`).
        fast: the fast RLOO step's own switches (:class:`fairl_lib.llm.fast.rloo.FastRLOOSettings`; set
            from Python, not from a profile).
    """

    algorithm: str = "ppo"
    steps: int = 200
    prompts_per_step: int = 8
    generations_per_prompt: int = 4
    lr: float = 5e-5
    beta: float = 0.05
    max_new_tokens: int = 20
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    max_prompt_tokens: int = 64
    trainable_top_blocks: int = -1
    max_grad_norm: float = 1.0
    ppo_epochs: int = 2
    vf_coef: float = 0.1
    eval_every: int = 20
    eval_greedy: bool = False
    eval_batch_size: int = 32
    save_steps: int = 25
    seed: int = 0
    sampler: str = "inverse_cdf"
    share_prefix: bool = True
    precision: str = "fp32"
    fast: FastRLOOSettings = FastRLOOSettings()

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"Unknown RLHF algorithm {self.algorithm!r}. Valid: {', '.join(ALGORITHMS)}.")
        if self.algorithm == "rloo" and self.generations_per_prompt < 2:
            raise ValueError("RLOO needs generations_per_prompt >= 2 (leave-one-out baseline).")
        if min(self.steps, self.prompts_per_step, self.generations_per_prompt, self.max_new_tokens) < 1:
            raise ValueError("steps, prompts_per_step, generations_per_prompt, max_new_tokens must be >= 1")
        if self.beta < 0 or self.lr <= 0 or self.temperature <= 0:
            raise ValueError("need beta >= 0, lr > 0, temperature > 0")

        check_sampler(self.sampler)
        object.__setattr__(self, "precision", resolve_precision(self.precision))

    @property
    def completions_per_step(self) -> int:
        return self.prompts_per_step * self.generations_per_prompt

    def gen_settings(self, greedy: bool = False, batch_size: int | None = None):
        """The :class:`fairl_lib.llm.models.GenSettings` of this run's rollouts (or of greedy evaluation)."""

        return GenSettings(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            do_sample=not greedy,
            batch_size=batch_size or self.eval_batch_size,
            max_prompt_tokens=self.max_prompt_tokens,
            sampler=self.sampler,
            share_prefix=self.share_prefix,
            precision=self.precision,
        )


def settings_dict(cfg: RLHFConfig) -> dict[str, Any]:
    """``cfg`` as one flat dict (stage keys, ``rlhf.json``, metrics files): the switches of ``cfg.fast``
    sit beside the ``[rlhf]`` fields, as they did when they were fields of ``[rlhf]``, so a stage's key
    depends on the settings only, not on where the dataclasses keep them."""
    out = dataclasses.asdict(cfg)
    out.update(out.pop("fast"))
    return out


# --------------------------------------------------------------------------- helpers


def as_float_list(values: Any, n: int, name: str = "reward_fn") -> list[float]:
    """``values`` as ``n`` finite-or-NaN floats; a wrong count is an error that says what to fix."""
    out = [float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1)]
    if len(out) != n:
        raise ValueError(
            f"{name} returned {len(out)} values for {n} completions; it must return one float "
            "per completion, in order."
        )
    return out


def freeze_lower_blocks(model: PreTrainedModel, top_blocks: int) -> dict[str, int]:
    """Train only the top ``top_blocks`` transformer blocks and the final norm (-1: train everything).

    Embeddings and the (usually tied) output head stay frozen. Blocks are the model's largest
    ``nn.ModuleList`` (``model.layers``, ``transformer.h``, ``gpt_neox.layers``, ...).

    Returns:
        ``{"trainable": n, "total": n}`` parameter counts.
    """
    from torch import nn

    total = sum(p.numel() for p in model.parameters())
    if top_blocks < 0:
        model.requires_grad_(True)
        return {"trainable": total, "total": total}
    blocks = max((m for m in model.modules() if isinstance(m, nn.ModuleList)), key=len, default=None)
    if blocks is None:
        raise ValueError(f"No transformer blocks (nn.ModuleList) found in {type(model).__name__}.")
    model.requires_grad_(False)
    for block in list(blocks)[len(blocks) - min(top_blocks, len(blocks)) :]:
        block.requires_grad_(True)
    norm = _final_norm(model)
    if norm is not None:
        norm.requires_grad_(True)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": total}


def _final_norm(model: PreTrainedModel):
    backbone = getattr(model, getattr(model, "base_model_prefix", ""), model)
    for attr in ("norm", "ln_f", "final_layer_norm", "final_layernorm"):
        if hasattr(backbone, attr):
            return getattr(backbone, attr)
    return None


def truncate_prompts(tok: PreTrainedTokenizerBase, prompts: Sequence[str], max_tokens: int) -> list[str]:
    """Prompts longer than ``max_tokens`` tokens keep their last ``max_tokens`` tokens (as text)."""
    if max_tokens <= 0:
        return list(prompts)
    ids = tok(list(prompts), add_special_tokens=False)["input_ids"]
    return [p if len(x) <= max_tokens else tok.decode(x[-max_tokens:]) for p, x in zip(prompts, ids)]


# --------------------------------------------------------------------------- PPO reward wrapper


@functools.cache
def text_reward_module_class() -> type:
    """The ``TextRewardModule`` class (defined on first use so importing this module needs no torch)."""
    import torch
    from torch import nn

    class _Backbone(nn.Module):
        def __init__(self, owner: Any):
            super().__init__()
            self._owner = [owner]  # a list: not registered as a sub-module (no recursion)

        def forward(self, input_ids=None, attention_mask=None, **_: Any):
            scores = self._owner[0].score_ids(input_ids, attention_mask)
            hidden = scores.to(torch.float32)[:, None, None].expand(-1, input_ids.shape[1], 1)
            return _Output(hidden_states=(hidden,))

    class _Output(dict):
        def __getattr__(self, name):
            try:
                return self[name]
            except KeyError:
                raise AttributeError(name) from None

    class TextRewardModule(nn.Module):
        """A text reward as the ``nn.Module`` trl's PPO expects from a reward model.

        trl calls ``get_reward(model, query_responses, pad_token_id, context_length)``: it runs
        ``getattr(model, model.base_model_prefix)(input_ids=..., attention_mask=...)``, applies
        ``model.score`` to the last hidden state and reads the value at the last response token.
        Here the "backbone" decodes the response tokens (positions ``context_length:``, padding
        removed, special tokens skipped) with the policy's tokenizer, calls ``reward_fn`` on the
        texts and returns the score at every position; ``score`` is the identity. PPO prompts are
        left-padded to exactly ``context_length`` tokens so the boundary is known.
        """

        base_model_prefix = "backbone"

        def __init__(self, tokenizer, reward_fn: RewardFn, context_length: int):
            super().__init__()
            self.tokenizer = tokenizer
            self.reward_fn = reward_fn
            self.context_length = int(context_length)
            self.backbone = _Backbone(self)
            self.score = nn.Identity()
            self.calls: list[list[str]] = []  # texts of the last call (for tests / logging)
            self.rollouts: RolloutLog | None = None  # set by PPO training: records every scored rollout
            self.config = _Output(_name_or_path=f"text-reward:{getattr(reward_fn, '__name__', 'reward_fn')}")

        def decode_responses(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> list[str]:
            resp = input_ids[:, self.context_length :]
            mask = attention_mask[:, self.context_length :].bool() if attention_mask is not None else None
            rows = [
                r[m].tolist() if mask is not None else r.tolist()
                for r, m in zip(resp.cpu(), mask.cpu() if mask is not None else [None] * len(resp))
            ]
            return self.tokenizer.batch_decode(rows, skip_special_tokens=True)

        def score_ids(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
            texts = self.decode_responses(input_ids, attention_mask)
            self.calls = [texts]
            values = as_float_list(self.reward_fn(texts), len(texts))
            if self.rollouts is not None:
                prompts = self.tokenizer.batch_decode(input_ids[:, : self.context_length].cpu(),
                                                      skip_special_tokens=True)
                self.rollouts.add(None, prompts, texts, values)
            return torch.tensor(values, dtype=torch.float32, device=input_ids.device)

        def forward(self, input_ids, attention_mask=None, **_: Any):
            return self.score_ids(input_ids, attention_mask)

    return TextRewardModule


def make_text_reward_module(tokenizer: PreTrainedTokenizerBase, reward_fn: RewardFn, context_length: int):
    """Wrap ``reward_fn`` (texts -> floats) as the reward ``nn.Module`` trl's PPO reads policy tokens with.

    See ``text_reward_module_class()`` for the protocol; ``context_length`` is the (fixed) padded
    prompt length, response tokens start there.
    """
    return text_reward_module_class()(tokenizer, reward_fn, context_length)


def fixed_left_pad_collator(pad_token_id: int, length: int):
    """Collate ``{"input_ids": [...]}`` rows into a ``(B, length)`` left-padded tensor (PPO queries)."""
    import torch

    def collate(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        out = torch.full((len(rows), length), pad_token_id, dtype=torch.long)
        for i, row in enumerate(rows):
            ids = list(row["input_ids"])[-length:]
            out[i, length - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        return {"input_ids": out}

    return collate


# --------------------------------------------------------------------------- rollouts


class RolloutLog:
    """Every training rollout of a run as one JSON line of ``rollouts.jsonl``.

    A row: ``step`` (the 1-based optimiser step whose batch it was), ``i`` (its position in that batch;
    RLOO's groups are consecutive: ``i // generations_per_prompt``), ``prompt`` and ``completion``
    (text: the prompt as trained on, i.e. truncated to ``max_prompt_tokens``, and the completion the
    reward saw), ``reward`` (``reward_fn``'s value, before the KL penalty). A step's rows are appended
    in one write as soon as its rewards are computed. :meth:`resume` keeps the complete rows of the
    steps the checkpoint a run resumes from covers and rewrites the file atomically, so a killed run
    holds each step once. ``step=None`` in :meth:`add` numbers steps by counting rows (PPO: one reward
    call per step of ``per_step`` rollouts).
    """

    def __init__(self, path: str | Path, per_step: int = 0):
        self.path, self.per_step, self.count = Path(path), int(per_step), 0

    def resume(self, upto_step: int) -> None:
        """Keep the rows of steps <= ``upto_step`` (0: start afresh)."""
        rows = _rollout_rows(self.path, upto_step) if self.path.exists() else []
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in rows))
        self.count = len(rows)

    def add(self, step: int | None, prompts: Sequence[str], completions: Sequence[str],
            rewards: Sequence[float]) -> None:
        if step is None:
            step = self.count // max(self.per_step, 1) + 1
        lines = [json.dumps({"step": int(step), "i": i, "prompt": str(p), "completion": str(c), "reward": float(r)})
                 for i, (p, c, r) in enumerate(zip(prompts, completions, rewards, strict=True))]
        with self.path.open("a") as fh:
            fh.write("".join(line + "\n" for line in lines))
        self.count += len(lines)


def _rollout_rows(path: Path, upto_step: int | None = None) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a kill
            continue
        if upto_step is None or row["step"] <= upto_step:
            rows.append(row)
    return rows


def load_rollouts(out_dir: str | Path) -> pd.DataFrame:
    """The rollouts of a run folder (``rollouts.jsonl``, see :class:`RolloutLog`), one row each, in order.

    Raises:
        FileNotFoundError: the run recorded none (it predates rollout recording).
    """
    path = Path(out_dir) / ROLLOUTS_FILE
    if not path.exists():
        raise FileNotFoundError(f"no {ROLLOUTS_FILE} in {out_dir}")
    return pd.DataFrame(_rollout_rows(path), columns=["step", "i", "prompt", "completion", "reward"])


# --------------------------------------------------------------------------- history + evaluation


class _Recorder:
    """Collects one history row per step (reward, KL, ...) and periodic held-out evaluations.

    With ``verbose`` it also prints progress (:class:`fairl_lib.llm.progress.Progress`, prefixed
    ``[label]``): a line at the start of training, a line with step k/N, s/step, mean reward, KL and
    ETA at least every 30 seconds of training (and for the first and the last step), and a line per
    held-out evaluation.
    """

    def __init__(
        self,
        out_dir: Path,
        cfg: RLHFConfig,
        eval_prompts: list[str] | None,
        eval_fn: EvalFn | None,
        tok,
        spec,
        verbose: bool,
        label: str = "rlhf",
    ):
        self.path = out_dir / "history.jsonl"
        self.cfg, self.eval_prompts, self.eval_fn, self.tok, self.spec = cfg, eval_prompts, eval_fn, tok, spec
        self.verbose, self.label = verbose, label
        self.progress: Progress | None = None
        self.rows: dict[int, dict[str, Any]] = {}
        self.t0 = time.perf_counter()
        self.elapsed_before = 0.0
        self._mark = self.t0  # start of the current training step (for trainers that log no step time)
        self._eval_since_mark = 0.0

    def start_clock(self) -> None:
        """Call right before training starts (step times exclude model loading and evaluation)."""
        self._mark, self._eval_since_mark = time.perf_counter(), 0.0
        done = max((s for s, r in self.rows.items() if "reward" in r), default=0)
        self.progress = Progress(self.cfg.steps, self.label, initial=done)
        if self.verbose:
            resumed = f", resuming after step {done}" if done else ""
            emit(f"[{self.label}] {self.cfg.algorithm}: {self.cfg.steps} steps of "
                 f"{self.cfg.completions_per_step} completions{resumed}")

    def load(self, upto_step: int) -> None:
        """Keep rows of steps <= ``upto_step`` from an interrupted run (resume)."""
        if not self.path.exists():
            return
        for line in self.path.read_text().splitlines():
            row = json.loads(line)
            if row["step"] <= upto_step:
                self.rows.setdefault(row["step"], {}).update(row)
        if self.rows:
            self.elapsed_before = max(r.get("elapsed_s", 0.0) or 0.0 for r in self.rows.values())
        self._rewrite()

    def _rewrite(self) -> None:
        atomic_write_text(self.path, "".join(json.dumps(self.rows[s]) + "\n" for s in sorted(self.rows)))

    def add(self, step: int, values: dict[str, Any]) -> None:
        now = time.perf_counter()
        if "reward" in values:
            if not math.isfinite(values.get("step_time_s", math.nan)):
                values = {**values, "step_time_s": now - self._mark - self._eval_since_mark}
            self._mark, self._eval_since_mark = now, 0.0
        row = self.rows.setdefault(step, {"step": step})
        row.update(values)
        row["elapsed_s"] = round(self.elapsed_before + now - self.t0, 2)
        with self.path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        if not self.verbose:
            return
        if "reward" in values and self.progress is not None:
            self.progress.update(step, reward=values["reward"], KL=values.get("kl", math.nan))
        elif any(k.startswith("eval_") for k in values):
            shown = " | ".join(f"{k[5:].replace('_', ' ')} {v:.4g}" for k, v in values.items()
                               if k.startswith("eval_") and k != "eval_seconds")
            emit(f"[{self.label}] held-out evaluation at step {step}: {shown} ({values.get('eval_seconds', 0):.0f} s)")

    def has_eval(self, step: int) -> bool:
        return any(k.startswith("eval_") for k in self.rows.get(step, {}))

    def evaluate(self, model, step: int) -> None:
        if not self.eval_prompts or self.eval_fn is None or self.has_eval(step):
            return

        settings = self.cfg.gen_settings(greedy=self.cfg.eval_greedy)
        t = time.perf_counter()
        completions = generate(
            model, self.tok, self.eval_prompts, settings, seed=self.cfg.seed + 7919, spec=self.spec
        )
        with full_precision():
            result = self.eval_fn(completions)
        values = result if isinstance(result, dict) else {"score": result}
        row = {f"eval_{k}": float(v) for k, v in values.items()}
        row["eval_seconds"] = round(time.perf_counter() - t, 2)
        self._eval_since_mark += row["eval_seconds"]
        self.add(step, row)

    def frame(self) -> pd.DataFrame:

        df = pd.DataFrame([self.rows[s] for s in sorted(self.rows)])
        return df.sort_values("step").reset_index(drop=True) if len(df) else df


def _make_callback(recorder: _Recorder, get_model: Callable[[], Any], cfg: RLHFConfig, algorithm: str):
    from transformers import TrainerCallback

    class HistoryCallback(TrainerCallback):
        """Turns trl's per-step logs into history rows and runs the periodic evaluation."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and state.global_step > 0 and _has_train_metrics(logs):
                recorder.add(state.global_step, _row_from_logs(logs, algorithm))

        def on_step_end(self, args, state, control, **kwargs):
            if cfg.eval_every > 0 and state.global_step % cfg.eval_every == 0:
                recorder.evaluate(get_model(), state.global_step)

    return HistoryCallback()


def _has_train_metrics(logs: dict[str, Any]) -> bool:
    return any(k in logs for k in ("reward", "objective/scores"))


def _row_from_logs(logs: dict[str, Any], algorithm: str) -> dict[str, Any]:
    """Common history columns from RLOO's or PPO's log dict.

    ``reward``: mean of ``reward_fn`` over the step's completions (before the KL penalty);
    ``kl``: KL(pi || pi_0) per completion (nats, summed over its tokens; the k1 estimate
    log pi - log pi_0 on the sampled tokens, so single steps can be slightly negative);
    ``kl_per_token``; ``entropy``: RLOO's per-token entropy, PPO's summed over the completion;
    ``step_time_s``: wall time of the step without evaluation.
    """

    def get(key: str) -> float:
        v = logs.get(key)
        return float(v) if v is not None else math.nan

    if algorithm == "rloo":
        length = get("completions/mean_length")
        kl_tok = get("kl")
        return {
            "reward": get("reward"),
            "reward_std": get("reward_std"),
            "kl": kl_tok * length,
            "kl_per_token": kl_tok,
            "completion_len": length,
            "entropy": get("entropy"),
            "loss": get("loss"),
            "step_time_s": get("step_time"),
        }
    return {
        "reward": get("objective/scores"),
        "reward_std": math.nan,
        "kl": get("objective/kl"),
        "kl_per_token": math.nan,
        "completion_len": math.nan,
        "entropy": get("objective/entropy"),
        "loss": get("loss/policy_avg"),
        "value_loss": get("loss/value_avg"),
        "step_time_s": math.nan,
    }


# --------------------------------------------------------------------------- training


def train_policy(
    base_model_name: str | Path,
    prompts_train: Sequence[str],
    reward_fn: RewardFn,
    cfg: RLHFConfig,
    out_dir: str | Path,
    eval_prompts: Sequence[str] | None = None,
    eval_fn: EvalFn | None = None,
    source: str = "auto",
    verbose: bool = True,
    label: str = "rlhf",
) -> tuple[Path, pd.DataFrame]:
    """Align ``base_model_name`` to ``reward_fn`` with RLHF; return (policy folder, history).

    Args:
        base_model_name: a ``models.BASE_LMS`` name, or a model folder (e.g. a saved policy).
            It is also the frozen reference pi_0 of the KL penalty.
        prompts_train: rollout prompts (RealToxicityPrompts text), sampled with ``cfg.seed``.
        reward_fn: ``list[str] completions -> list[float]`` (completion text only, prompt removed);
            higher is better. Any callable: classifier reward, IRL reward, ...
        cfg: :class:`RLHFConfig`.
        out_dir: output folder (created; an existing complete run there is returned as is, an
            interrupted RLOO run resumes from its last checkpoint).
        eval_prompts, eval_fn: held-out prompts and ``list[str] -> dict[str, float] | float``
            (e.g. toxicity rate); evaluated at step 0, every ``cfg.eval_every`` steps and at the end.
            Columns ``eval_<key>`` in the history.
        source: model source for a registry name (``models.load_lm``).
        verbose: print progress: step k/N, s/step, mean reward, KL and ETA at least every 30 s
            of training, and each held-out evaluation (flushed, so it also leaves worker processes).
        label: the progress lines' prefix (``[rlhf]``; re-RLHF runs name their reward).

    Returns:
        ``(out_dir / "policy", history)``, one history row per step (``step`` 0 = before training):
        ``reward`` (mean ``reward_fn``), ``kl`` (nats per completion), ``kl_per_token``, ``entropy``,
        ``loss``, ``elapsed_s``, ``eval_*``.
    """

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / DONE_FILE).exists() and (out_dir / "policy").is_dir():
        return out_dir / "policy", pd.read_csv(out_dir / "history.csv")
    if not prompts_train:
        raise ValueError("prompts_train is empty: RLHF needs rollout prompts.")
    t_start = time.perf_counter()
    train = _train_rloo if cfg.algorithm == "rloo" else _train_ppo
    history, info = train(base_model_name, list(prompts_train), reward_fn, cfg, out_dir, eval_prompts, eval_fn,
                          source, verbose, label)
    atomic_write_text(out_dir / "history.csv", history.to_csv(index=False))
    info.update(
        config=settings_dict(cfg),
        base=str(base_model_name),
        seconds=round(time.perf_counter() - t_start, 1),
        n_train_prompts=len(prompts_train),
        n_eval_prompts=len(eval_prompts or []),
    )
    atomic_write_text(out_dir / DONE_FILE, json.dumps(info, indent=1, default=str))
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)  # after the marker: a kill here loses nothing
    return out_dir / "policy", history


def _load_base(base_model_name: str | Path, source: str):

    _threads()
    lm = load_lm(base_model_name, source=source)
    if lm.path is None or not Path(lm.path).is_dir():
        raise RuntimeError("The base model must load from a folder (trl reloads the reference from it).")
    return lm


def _rloo_args(cfg: RLHFConfig, out_dir: Path, gen_kwargs: dict[str, Any]):
    from trl import RLOOConfig

    extra = {k: v for k, v in gen_kwargs.items() if k in ("suppress_tokens",)}
    return RLOOConfig(
        output_dir=str(out_dir / "checkpoints"),
        max_steps=cfg.steps,
        learning_rate=cfg.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        beta=cfg.beta,
        num_generations=cfg.generations_per_prompt,
        per_device_train_batch_size=cfg.completions_per_step,
        gradient_accumulation_steps=1,
        max_completion_length=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        top_p=cfg.top_p,
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        use_cpu=True,
        max_grad_norm=cfg.max_grad_norm,
        logging_steps=1,
        save_strategy="steps" if cfg.save_steps > 0 else "no",
        save_steps=max(cfg.save_steps, 1),
        save_total_limit=1,
        report_to="none",
        seed=cfg.seed,
        data_seed=cfg.seed,
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        remove_unused_columns=False,
        log_completions=False,
        generation_kwargs=extra or None,
        shuffle_dataset=True,
        num_train_epochs=1,
    )


def _train_rloo(base, prompts, reward_fn, cfg, out_dir, eval_prompts, eval_fn, source, verbose, label):
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from transformers.trainer_utils import get_last_checkpoint
    from trl import RLOOTrainer


    lm = _load_base(base, source)
    model, tok = lm.model, lm.tokenizer
    counts = freeze_lower_blocks(model, cfg.trainable_top_blocks)
    model.train()
    prompts = truncate_prompts(tok, prompts, cfg.max_prompt_tokens)

    rollouts = RolloutLog(out_dir / ROLLOUTS_FILE)

    def rloo_reward(prompts=None, completions=None, trainer_state=None, **_: Any) -> list[float]:
        with full_precision():  # the reward model computes as it does outside RLHF, whatever the policy's precision
            values = as_float_list(reward_fn(list(completions)), len(completions))
        rollouts.add(trainer_state.global_step + 1 if trainer_state is not None else None, prompts, completions,
                     values)
        return values

    rloo_reward.__name__ = getattr(reward_fn, "__name__", "reward_fn")
    args = _rloo_args(cfg, out_dir, generation_kwargs(tok, cfg.gen_settings()))
    trl_kwargs = {"model": model, "reward_funcs": rloo_reward, "args": args,
                  "train_dataset": Dataset.from_dict({"prompt": prompts}), "processing_class": tok}
    fast = wants_fast_step(cfg)
    trainer = fast_rloo_trainer_class()(cfg, **trl_kwargs) if fast else RLOOTrainer(**trl_kwargs)
    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    recorder = _Recorder(out_dir, cfg, list(eval_prompts or []), eval_fn, tok, lm.spec, verbose, label)
    ckpt_dir = out_dir / "checkpoints"
    last = get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None
    recorder.load(int(last.rsplit("-", 1)[-1]) if last else 0)
    rollouts.resume(int(last.rsplit("-", 1)[-1]) if last else 0)
    trainer.add_callback(_make_callback(recorder, lambda: trainer.model, cfg, "rloo"))
    recorder.evaluate(model, 0)
    recorder.start_clock()
    trainer.train(resume_from_checkpoint=last)
    recorder.evaluate(trainer.model, cfg.steps)
    save_lm(trainer.model, tok, out_dir / "policy", base=lm.spec.name, trained_with="rloo")
    info = {"algorithm": "rloo", "params": counts, "resumed_from": last, "base_meta": lm.meta,
            "speedups": trainer.speedup_info() if fast else {}}
    return recorder.frame(), info


def wants_fast_step(cfg: RLHFConfig) -> bool:
    """Whether RLOO trains with the fast step (:mod:`fairl_lib.llm.fast.rloo`) rather than trl's own
    ``RLOOTrainer``: when the settings ask for something trl's step does not do (the inverse-CDF
    sampler, one prefill per prompt, bf16 autocast, or a switch of ``cfg.fast``)."""
    return (cfg.sampler == "inverse_cdf" or cfg.share_prefix or cfg.precision == "bf16"
            or cfg.fast.any_on())


def _train_ppo(base, prompts, reward_fn, cfg, out_dir, eval_prompts, eval_fn, source, verbose, label):
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl.experimental.ppo import PPOConfig, PPOTrainer


    lm = _load_base(base, source)
    policy, tok = lm.model, lm.tokenizer
    ref = load_lm(lm.path).model
    ref.requires_grad_(False)
    value = AutoModelForSequenceClassification.from_pretrained(lm.path, num_labels=1, dtype=torch.float32)
    value.config.pad_token_id = tok.pad_token_id
    counts = freeze_lower_blocks(policy, cfg.trainable_top_blocks)
    freeze_lower_blocks(value, cfg.trainable_top_blocks)
    if cfg.trainable_top_blocks >= 0:
        value.score.requires_grad_(True)
    policy.generation_config.suppress_tokens = suppressed_token_ids(tok)
    ids = prompt_ids(tok, prompts, lm.spec, cfg.max_prompt_tokens)
    length = max(len(x) for x in ids)
    reward_module = make_text_reward_module(tok, reward_fn, context_length=length)
    reward_module.rollouts = RolloutLog(out_dir / ROLLOUTS_FILE, per_step=cfg.completions_per_step)
    batch = cfg.completions_per_step
    data = Dataset.from_dict({"input_ids": ids})
    args = PPOConfig(
        output_dir=str(out_dir / "checkpoints"),
        total_episodes=cfg.steps * batch,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=1,
        num_mini_batches=1,
        num_ppo_epochs=cfg.ppo_epochs,
        learning_rate=cfg.lr,
        lr_scheduler_type="constant",
        kl_coef=cfg.beta,
        response_length=cfg.max_new_tokens,
        temperature=cfg.temperature,
        stop_token="eos",
        missing_eos_penalty=None,
        vf_coef=cfg.vf_coef,
        kl_estimator="k1",
        whiten_rewards=False,
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        use_cpu=True,
        max_grad_norm=cfg.max_grad_norm,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=cfg.seed,
        num_sample_generations=0,
        local_rollout_forward_batch_size=batch,
        disable_tqdm=True,
        dataloader_num_workers=0,
        per_device_eval_batch_size=1,
    )
    trainer = PPOTrainer(
        args=args,
        processing_class=tok,
        model=policy,
        ref_model=ref,
        reward_model=reward_module,
        value_model=value,
        train_dataset=data,
        eval_dataset=data.select(range(1)),
        data_collator=fixed_left_pad_collator(tok.pad_token_id, length),
    )
    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    recorder = _Recorder(out_dir, cfg, list(eval_prompts or []), eval_fn, tok, lm.spec, verbose, label)
    (out_dir / "history.jsonl").unlink(missing_ok=True)  # PPO cannot resume: start the history afresh
    reward_module.rollouts.resume(0)  # ... and the rollouts
    trainer.add_callback(_make_callback(recorder, lambda: policy, cfg, "ppo"))
    recorder.evaluate(policy, 0)
    recorder.start_clock()
    trainer.train()
    recorder.evaluate(policy, cfg.steps)
    save_lm(policy, tok, out_dir / "policy", base=lm.spec.name, trained_with="ppo")
    info = {"algorithm": "ppo", "params": counts, "resumed_from": None, "base_meta": lm.meta}
    return recorder.frame(), info


def load_history(out_dir: str | Path) -> pd.DataFrame:
    """The history of a finished run (``history.csv``) or, while running, of ``history.jsonl``."""

    out_dir = Path(out_dir)
    if (out_dir / "history.csv").exists():
        return pd.read_csv(out_dir / "history.csv")
    rows: dict[int, dict[str, Any]] = {}
    path = out_dir / "history.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        row = json.loads(line)
        rows.setdefault(row["step"], {}).update(row)
    return pd.DataFrame([rows[s] for s in sorted(rows)])
