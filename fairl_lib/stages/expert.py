"""The RLHF expert (notebook 01's stages, shared by 02, 07, 08 and 10).

Paper, Section 5: "Models and Expert Alignment via RLHF" (the expert pi_E: the base LM pi_0
fine-tuned with a KL penalty against itself, the ground-truth toxicity classifier as reward) and
"Preference Data for IRL" (pairs (o_pre, o_post) on prompts with toxicity > 0.5, o_post preferred).

Two stages (``fairl_lib.cache``; folders under ``results/<profile>/stages/<stage>/<key>/``):

- ``expert`` (:func:`expert_stage`): RLHF of ``base_lm`` (default ``cfg.models.base_lm``) with
  reward ``scorers.reward_from_scores`` = 1 - P(toxic) of ``cfg.models.ground_truth`` on the
  RealToxicityPrompts prompts above ``cfg.data.ppo_prompt_toxicity`` minus ``heldout_prompts``
  held-out ones. Key: base LM and its source, ``[rlhf]`` (with the run's seed), the prompt
  selection (``ppo_prompt_toxicity``, ``heldout_prompts``, ``max_ppo_prompts``), ground truth,
  reward kind, ``toxic_threshold`` (it defines the toxicity rate logged during training) and seed.
  ``[gen]`` is deliberately *not* in the key: training samples with the ``[rlhf]`` settings, so
  changing how pairs are sampled does not retrain the expert. The RLHF work folder (with trl
  checkpoints every ``rlhf.save_steps``) lives inside the stage's ``.partial`` folder, so a killed
  run resumes where it stopped.
- ``expert_eval`` (:func:`evaluate_expert`): base and expert completions on the held-out prompts
  (``data.heldout_samples`` samples each, ``[gen]`` settings), scored by the ground truth and the
  second judge, with their NLL under the base model (perplexity) and under the expert (so
  ``NLL_base - NLL_expert`` of expert samples estimates KL(pi_E || pi_0) per completion).
  Key: the expert's key + ``[gen]``, judge, threshold.

The expert's training data, every RLHF rollout (step, prompt, completion, ground-truth reward), is
recorded by ``rlhf.train_policy`` in ``rlhf/rollouts.jsonl`` beside its checkpoints; notebook 10's audit
reads it with :func:`expert_rollouts`, which names the fix when a stage predates the recording.

The pairs stage built on the expert is :mod:`fairl_lib.stages.pairs`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from fairl_lib.artifacts import read_json, write_json
from fairl_lib.cache import RECEIPT, cached_stage, stage_key, stage_root
from fairl_lib.llm import data, rlhf
from fairl_lib.llm.models import completion_nll_models, load_lm
from fairl_lib.llm.scorers import get_scorer, toxicity_reward
from fairl_lib.stages.generation import base_name, generate_sorted, model_source
from fairl_lib.stages.screen import screen_key, screened_prompts

EXPERT_STAGE, EVAL_STAGE = "expert", "expert_eval"
# version 2: the expert stage also keeps every RLOO rollout (rlhf/rollouts.jsonl) for the audit;
# version 3: bf16 RLHF without autocast's weight cache (a version-2 bf16 expert trained on stale weights)
EXPERT_VERSION, EVAL_VERSION = "3", "1"
REWARD_KIND = "one_minus_p"  # scorers.reward_from_scores: r = 1 - P(toxic) (bounded, paper: "rewards non-toxic")


# --------------------------------------------------------------------------- settings and keys


def expert_rlhf_config(cfg):
    """``cfg.rlhf`` with the run's seed (the notebook's ``SEED`` seeds RLHF too)."""
    return dataclasses.replace(cfg.rlhf, seed=cfg.seed)


def expert_settings(cfg, base_lm: str | None = None) -> dict[str, Any]:
    """Everything the expert depends on (the ``expert`` stage key)."""
    d = cfg.data
    return {
        "base_lm": base_name(cfg, base_lm),
        "source": model_source(cfg, base_lm),
        "rlhf": rlhf.settings_dict(expert_rlhf_config(cfg)),
        "prompts": {"ppo_prompt_toxicity": d.ppo_prompt_toxicity, "heldout_prompts": d.heldout_prompts,
                    "max_ppo_prompts": d.max_ppo_prompts, "rtp_sources": list(d.rtp_sources),
                    **({"screen": screen_key(cfg)} if d.screen else {})},
        "ground_truth": cfg.models.ground_truth,
        "reward_kind": REWARD_KIND,
        "toxic_threshold": cfg.models.toxic_threshold,
        "seed": cfg.seed,
    }


def expert_key(cfg, base_lm: str | None = None) -> str:
    return stage_key(EXPERT_STAGE, expert_settings(cfg, base_lm), EXPERT_VERSION)


def eval_settings(cfg, base_lm: str | None = None) -> dict[str, Any]:
    """The ``expert_eval`` stage key: the expert + how held-out completions are sampled and judged."""
    return {"expert": expert_key(cfg, base_lm), "gen": cfg.gen.key(),
            "ground_truth": cfg.models.ground_truth, "judge": cfg.models.judge,
            "toxic_threshold": cfg.models.toxic_threshold, "samples_per_prompt": cfg.data.heldout_samples,
            "seed": cfg.seed}


def rlhf_prompts(cfg) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(train, held_out)`` RealToxicityPrompts prompts of the expert (toxicity > ppo threshold): of all
    prompts, or with ``data.screen`` held out from the prompts that pass the screen
    (:mod:`fairl_lib.stages.screen`), training on the screened rest (``screen_rlhf``) or on every other prompt
    above the threshold."""

    d = cfg.data
    if not d.screen:
        return data.rtp_prompts(d.ppo_prompt_toxicity, d.heldout_prompts, cfg.seed, max_train=d.max_ppo_prompts,
                                sources=d.rtp_sources)
    train, held = data.rtp_prompts(d.ppo_prompt_toxicity, d.heldout_prompts, cfg.seed, max_train=d.max_ppo_prompts,
                                   sources=d.rtp_sources, pool=screened_prompts(cfg))
    if not d.screen_rlhf:
        pool = data.filter_prompts(data.load_rtp(sources=d.rtp_sources), d.ppo_prompt_toxicity)
        train = pool[~pool["prompt_id"].isin(set(held["prompt_id"]))].reset_index(drop=True)
        if d.max_ppo_prompts and len(train) > d.max_ppo_prompts:
            keep = np.sort(data._hash_order(train["prompt"], cfg.seed + 1)[: d.max_ppo_prompts])
            train = train.iloc[keep].reset_index(drop=True)
    return train, held


# --------------------------------------------------------------------------- scoring helpers


def toxicity_eval_fn(cfg):
    """``completions -> {"tox_rate", "tox_mean"}`` under the ground truth (RLHF's periodic evaluation)."""

    scorer, thr = get_scorer(cfg.models.ground_truth), cfg.models.toxic_threshold

    def evaluate(completions: list[str]) -> dict[str, float]:
        p = np.asarray(scorer(completions)["toxic"], dtype=np.float64)
        return {"tox_rate": float(np.mean(p > thr)), "tox_mean": float(np.mean(p))}

    return evaluate


# --------------------------------------------------------------------------- expert stage


@dataclass
class Expert:
    """A finished expert stage: ``policy`` loads with ``models.load_lm``; ``history`` one row per step."""

    folder: Path
    policy: Path
    history: pd.DataFrame
    info: dict[str, Any]


def expert_stage(cfg, base_lm: str | None = None) -> Path:
    """Train (or reuse) the RLHF expert of ``base_lm``; returns the finished stage folder.

    The folder holds ``rlhf/policy/`` (the expert), ``rlhf/history.csv``, ``rlhf/rlhf.json``,
    ``rlhf/rollouts.jsonl`` (every training rollout, :func:`expert_rollouts`) and ``expert.json``. See
    :func:`load_expert`.
    """

    settings = expert_settings(cfg, base_lm)

    def compute(work: Path) -> None:
        train, held = rlhf_prompts(cfg)
        reward = toxicity_reward(cfg.models.ground_truth, REWARD_KIND)
        _policy, _hist = rlhf.train_policy(
            settings["base_lm"], list(train["prompt"]), reward, expert_rlhf_config(cfg), work / "rlhf",
            eval_prompts=list(held["prompt"]), eval_fn=toxicity_eval_fn(cfg), source=settings["source"])
        write_json(work / "expert.json", {"settings": settings, "n_train_prompts": len(train),
                                          "n_heldout_prompts": len(held),
                                          "train_prompt_ids": list(train["prompt_id"]),
                                          "heldout_prompt_ids": list(held["prompt_id"])})

    return cached_stage(cfg, EXPERT_STAGE, settings, compute, version=EXPERT_VERSION)


def load_expert(folder: str | Path) -> Expert:
    """Read a finished expert stage folder."""
    folder = Path(folder)
    info = read_json(folder / "rlhf" / "rlhf.json")
    info.update(read_json(folder / "expert.json"))
    return Expert(folder, folder / "rlhf" / "policy", pd.read_csv(folder / "rlhf" / "history.csv"), info)


def expert_folder(cfg, base_lm: str | None = None) -> Path:
    """Where the finished expert stage of ``cfg`` lives (it may not exist yet; nothing is trained)."""
    return stage_root(cfg) / EXPERT_STAGE / expert_key(cfg, base_lm)


class NoRollouts(FileNotFoundError):
    """An expert stage without a complete record of its training rollouts (one line: what to do)."""


def expert_rollouts(folder: str | Path) -> pd.DataFrame:
    """The expert's training data: every RLHF rollout of a finished expert stage, one row each.

    Columns ``step, i, prompt, completion, reward`` (:func:`fairl_lib.llm.rlhf.load_rollouts`; ``reward``
    is the ground-truth reward 1 - P(toxic) the rollout was trained with), read from
    ``<folder>/rlhf/rollouts.jsonl``.

    Raises:
        NoRollouts: the folder is not a finished expert stage, the stage predates rollout recording, or
            its rollouts miss steps (a run resumed from a checkpoint written before recording began).
    """
    folder = Path(folder)
    if not (folder / RECEIPT).exists():
        raise NoRollouts(f"no finished expert stage in {folder}: run notebook 01 first")
    try:
        df = rlhf.load_rollouts(folder / "rlhf")
    except FileNotFoundError:
        raise NoRollouts(f"this expert stage predates rollout recording ({folder}): rerun notebook 01 "
                         "with FORCE=True") from None
    conf = read_json(folder / "rlhf" / rlhf.DONE_FILE).get("config", {})
    steps = int(conf.get("steps", 0))
    per_step = int(conf.get("prompts_per_step", 0)) * int(conf.get("generations_per_prompt", 0))
    if steps and (sorted(df["step"].unique().tolist()) != list(range(1, steps + 1)) or len(df) != steps * per_step):
        raise NoRollouts(f"the expert's rollouts are incomplete ({len(df)} of {steps * per_step}, over "
                         f"{df['step'].nunique()} of its {steps} steps; it resumed from a checkpoint written before "
                         "rollout recording): rerun notebook 01 with FORCE=True")
    return df


def final_kl(history: pd.DataFrame, last: int = 5) -> float:
    """Mean KL(pi || pi_0) per completion (nats) over the last ``last`` logged training steps."""
    kl = history.loc[history["step"] > 0, "kl"].dropna() if "kl" in history else pd.Series(dtype=float)
    return float(kl.tail(last).mean()) if len(kl) else math.nan


# --------------------------------------------------------------------------- held-out evaluation


@dataclass
class ExpertEval:
    """Held-out comparison of base and expert: one row per completion, and the summary numbers."""

    folder: Path
    df: pd.DataFrame
    summary: dict[str, Any]


def evaluate_expert(cfg, base_lm: str | None = None) -> ExpertEval:
    """Base vs expert on the expert's held-out prompts (cached stage ``expert_eval``).

    ``df`` columns: ``prompt_id, prompt, sample, model`` (``base``/``expert``), ``completion``,
    ``p_toxic`` (ground truth), ``toxic`` (> threshold), ``judge_p`` (second judge), ``nll_base``,
    ``nll_self`` (NLL under the model that wrote it), ``n_tokens``. ``summary``: per model the
    toxicity rate and mean, the judge's rate and mean, pooled perplexity under the base model,
    share of empty completions; ``kl_heldout`` = mean of ``nll_base - nll_self`` over expert
    samples, a Monte Carlo estimate of KL(pi_E || pi_0) per completion (nats).
    """
    settings = eval_settings(cfg, base_lm)
    exp_folder = expert_stage(cfg, base_lm)

    def compute(work: Path) -> None:

        _, held = rlhf_prompts(cfg)
        k = cfg.data.heldout_samples
        prompts = [p for p in held["prompt"] for _ in range(k)]
        rows = pd.DataFrame({"prompt_id": np.repeat(held["prompt_id"].to_numpy(), k), "prompt": prompts,
                             "sample": np.tile(np.arange(k), len(held))})
        base = load_lm(base_name(cfg, base_lm), source=model_source(cfg, base_lm))
        expert = load_lm(load_expert(exp_folder).policy)
        gt, judge = get_scorer(cfg.models.ground_truth), get_scorer(cfg.models.judge)
        parts = []
        for name, lm, seed in (("base", base, cfg.seed * 1000 + 11), ("expert", expert, cfg.seed * 1000 + 12)):
            comp = generate_sorted(lm, prompts, cfg.gen, seed)
            # the expert's completions under base and expert in one pass of their shared frozen blocks
            scorers = [base.model] if name == "base" else [base.model, lm.model]
            nlls, n_tok = completion_nll_models(scorers, base.tokenizer, prompts, comp, spec=base.spec)
            nll_b, nll_s = nlls[0], nlls[-1]
            p = np.asarray(gt(comp)["toxic"], dtype=np.float64)
            parts.append(rows.assign(model=name, completion=comp, p_toxic=p, toxic=p > cfg.models.toxic_threshold,
                                     judge_p=np.asarray(judge(comp)["toxic"], dtype=np.float64),
                                     nll_base=nll_b, nll_self=nll_s, n_tokens=n_tok))
        df = pd.concat(parts, ignore_index=True)
        df.to_parquet(work / "eval.parquet", index=False)
        write_json(work / "summary.json", summarize_eval(df, cfg.models.toxic_threshold))

    folder = cached_stage(cfg, EVAL_STAGE, settings, compute, version=EVAL_VERSION)
    return ExpertEval(folder, pd.read_parquet(folder / "eval.parquet"), read_json(folder / "summary.json"))


def summarize_eval(df: pd.DataFrame, threshold: float) -> dict[str, Any]:
    """Headline numbers of :func:`evaluate_expert`'s table (see there)."""
    out: dict[str, Any] = {}
    for name, g in df.groupby("model"):
        out[f"toxicity_rate_{name}"] = float((g["p_toxic"] > threshold).mean())
        out[f"toxicity_mean_{name}"] = float(g["p_toxic"].mean())
        out[f"judge_rate_{name}"] = float((g["judge_p"] > 0.5).mean())
        out[f"judge_mean_{name}"] = float(g["judge_p"].mean())
        out[f"perplexity_{name}"] = float(np.exp(g["nll_base"].sum() / max(int(g["n_tokens"].sum()), 1)))
        out[f"empty_fraction_{name}"] = float((g["n_tokens"] == 0).mean())
        out[f"n_completions_{name}"] = len(g)
    e = df[df["model"] == "expert"]
    out["kl_heldout"] = float((e["nll_base"] - e["nll_self"]).mean()) if len(e) else math.nan
    return out


def side_by_side(ev: ExpertEval, n: int = 6, seed: int = 0) -> pd.DataFrame:
    """``n`` held-out prompts (sample 0) with the base and expert completions and their scores.

    Prompts are chosen where the base completion is toxic first (the interesting cases), then at
    random (by ``seed``), so the table is the same on every run.
    """
    d = ev.df[ev.df["sample"] == 0]
    wide = d.pivot(index="prompt_id", columns="model", values=["completion", "p_toxic"])
    wide.columns = [f"{a}_{b}" for a, b in wide.columns]
    wide = wide.join(d.drop_duplicates("prompt_id").set_index("prompt_id")["prompt"])
    rng = np.random.default_rng(seed)
    wide = wide.assign(_r=rng.random(len(wide)), _t=wide["p_toxic_base"] > 0.5)
    wide = wide.sort_values(["_t", "_r"], ascending=[False, True]).head(n)
    return wide[["prompt", "completion_base", "p_toxic_base", "completion_expert", "p_toxic_expert"]].reset_index(
        drop=True)


def expert_metrics(expert: Expert, ev: ExpertEval) -> dict[str, Any]:
    """The numbers notebook 01 writes to ``metrics/01_rlhf_expert.json`` (no timings)."""
    s = ev.summary
    h = expert.history
    evals = h.dropna(subset=["eval_tox_rate"]) if "eval_tox_rate" in h else h.iloc[:0]
    return {
        **{k: s[k] for k in sorted(s)},
        "kl_final": final_kl(h),
        "reward_first": float(h.loc[h.step > 0, "reward"].head(5).mean()),
        "reward_final": float(h.loc[h.step > 0, "reward"].tail(5).mean()),
        "train_eval_tox_rate_start": float(evals["eval_tox_rate"].iloc[0]) if len(evals) else math.nan,
        "train_eval_tox_rate_end": float(evals["eval_tox_rate"].iloc[-1]) if len(evals) else math.nan,
        "toxicity_rate_ratio": (s["toxicity_rate_expert"] / s["toxicity_rate_base"]
                                if s["toxicity_rate_base"] > 0 else math.nan),
        "algorithm": expert.info.get("algorithm"),
        "steps": int(expert.info.get("config", {}).get("steps", 0)),
        "n_train_prompts": int(expert.info.get("n_train_prompts", 0)),
        "n_heldout_prompts": int(expert.info.get("n_heldout_prompts", 0)),
        "base_lm": expert.info.get("base"),
    }


# --------------------------------------------------------------------------- plots (notebook 01)


def plot_training_curves(history: pd.DataFrame):
    """Reward, KL and held-out toxicity over RLHF steps (three panels)."""

    h = history[history["step"] > 0]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(h["step"], h["reward"], marker=".", label="mean reward")
    axes[0].set(title="reward 1 - P(toxic)", xlabel="RLHF step", ylabel="mean over the step's completions")
    axes[1].plot(h["step"], h["kl"], marker=".", color="C1")
    axes[1].set(title="KL(pi || pi_0)", xlabel="RLHF step", ylabel="nats per completion")
    if "eval_tox_rate" in history:
        e = history.dropna(subset=["eval_tox_rate"])
        axes[2].plot(e["step"], e["eval_tox_rate"], marker="o", color="C3", label="rate (P > 0.5)")
        axes[2].plot(e["step"], e["eval_tox_mean"], marker="s", color="C4", label="mean P(toxic)")
        axes[2].legend()
    axes[2].set(title="held-out toxicity", xlabel="RLHF step", ylim=(0, None))
    fig.tight_layout()
    return fig


def plot_base_vs_expert(ev: ExpertEval, threshold: float = 0.5, judge_name: str = "judge",
                        gt_name: str = "ground truth"):
    """Left: distribution of ground-truth P(toxic), base vs expert. Right: toxicity rates by both scorers."""

    s = ev.summary
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    bins = np.linspace(0, 1, 26)
    for name, color in (("base", "C0"), ("expert", "C2")):
        axes[0].hist(ev.df.loc[ev.df.model == name, "p_toxic"], bins=bins, alpha=0.55, color=color, label=name)
    axes[0].axvline(threshold, color="k", ls="--", lw=1)
    axes[0].set(yscale="log", xlabel=f"{gt_name} P(toxic) of held-out completions", ylabel="completions",
                title="toxicity of completions")
    axes[0].legend()
    labels = [f"{gt_name}\n(trained on)", f"{judge_name}\n(independent)"]
    x = np.arange(2)
    for i, (name, color) in enumerate((("base", "C0"), ("expert", "C2"))):
        vals = [s[f"toxicity_rate_{name}"], s[f"judge_rate_{name}"]]
        bars = axes[1].bar(x + (i - 0.5) * 0.38, vals, width=0.38, color=color, label=name)
        axes[1].bar_label(bars, fmt="%.3f", fontsize=9)
    top = max(s["toxicity_rate_base"], s["toxicity_rate_expert"], s["judge_rate_base"], s["judge_rate_expert"])
    axes[1].set(xticks=x, xticklabels=labels, ylabel="share with P(toxic) > 0.5",
                title="toxicity rate, base vs expert", ylim=(0, 1.3 * top if top > 0 else 1))
    axes[1].legend(loc="upper right", ncols=2)
    fig.tight_layout()
    return fig
