"""Re-RLHF with recovered rewards (paper Sec. 5 "downstream utility", Sec. 6, Figure 3 right).

The paper fine-tunes the base model three times, changing only the reward: (i) the ground-truth
toxicity classifier, (ii) the FA-IRL reward, (iii) a standard IRL reward, and reports the toxicity
rate on held-out prompts (4%, 6% and 9%). This module:

- composes a saved reward ``R(h(o))`` (``irl.reward.load_reward``) with the frozen sentence
  embedder ``h`` into a text reward ``list[str] -> list[float]`` (:class:`LearnedTextReward`), so
  ``rlhf.train_policy`` (which never imports the IRL code) can optimise it;
- runs each fine-tuning as a cached stage (:func:`rerlhf_stage`) with exactly the expert's RLHF
  settings (``[rlhf]`` with the run's seed, same prompts, same held-out evaluation), except the reward
  and, optionally, the number of steps (``[rerlhf] steps``). When the settings equal the expert's,
  run (i) *is* the expert (``expert.expert_stage``): it is reused, not retrained;
- evaluates every run on the expert's held-out prompts over training (ground-truth rate, and for the
  learned-reward runs also the independent judge's rate) and at the end with the protocol of
  ``expert.evaluate_expert`` (:func:`evaluate_policy`), so reward hacking of one scorer shows.

Choices the paper leaves open (configurable in :class:`RerlhfConfig`):

- *Reward scale.* An IRL reward is identified only up to a positive affine map, and RLOO's objective
  ``E[r] - beta KL`` (advantages not normalised) depends on the reward's scale: the same ``beta``
  means a tighter KL leash for a reward with a small spread. ``normalize="match_gt"`` (default) maps
  the learned reward affinely so that, on the outputs of the *training* pairs (both sides), it has
  the mean and standard deviation of the ground-truth reward ``1 - P(toxic)`` there. Only these two
  numbers come from the ground truth; the ranking of outputs is entirely the learned reward's. So
  ``beta`` has the same meaning in all three runs. ``"standardize"`` uses mean 0 / std 1 on the same
  outputs (no ground truth at all); ``"none"`` uses the raw reward.
- *Which saved reward.* The reward of seed ``reward_seed`` (``-1`` = the run's ``SEED``) written by
  notebook 04 under ``results/<profile>/rewards/<method>/seed<k>/``; ``fa_method`` (default the
  paper's headline self-supervised ``me_fa_margin``) and ``irl_method`` (``me_irl``, the same loss
  without failures, so the comparison isolates the failure path).
- *Refusal correctness.* The paper says FA-IRL "improves refusal correctness" but never defines it
  (no prompts, labels or metric are given); it is not measured here.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from fairl_lib.analysis import paper
from fairl_lib.analysis.failure_path import acts, flip_shares
from fairl_lib.artifacts import read_json, write_json
from fairl_lib.cache import cached_stage, stage_key
from fairl_lib.config import section
from fairl_lib.irl import WEIGHT_FILE, baseline_of, load_reward, reward_folder
from fairl_lib.llm import rlhf
from fairl_lib.llm.fast.parallel import run_jobs
from fairl_lib.llm.models import Embedder, completion_nll, load_lm
from fairl_lib.llm.progress import emit
from fairl_lib.llm.scorers import get_scorer, toxicity_reward
from fairl_lib.stages.expert import (
    REWARD_KIND,
    base_name,
    evaluate_expert,
    expert_rlhf_config,
    expert_settings,
    expert_stage,
    load_expert,
    model_source,
    rlhf_prompts,
    toxicity_eval_fn,
)
from fairl_lib.stages.generation import generate_sorted
from fairl_lib.stages.pairs import pairs_stage
from fairl_lib.stages.tuning import best_fa_config, best_stage

STAGE, EVAL_STAGE = "rerlhf", "rerlhf_eval"
STAGE_VERSION, EVAL_VERSION = "1", "1"
KINDS = ("ground_truth", "fa_irl", "irl")
NORMALIZATIONS = ("match_gt", "standardize", "none")
PAPER_RATES = paper.RERLHF_RATES  # Sec. 6 / Figure 3 right
JUDGE_THRESHOLD = 0.5


@section("rerlhf")
@dataclass(frozen=True)
class RerlhfConfig:
    """Re-RLHF settings (profile section ``[rerlhf]``); everything else is the expert's ``[rlhf]``.

    Attributes:
        steps: RLHF steps of each re-RLHF run (0 = ``[rlhf].steps``, the expert's). With 0 (and
            ``eval_every`` 0) run (i) is the expert stage itself and is reused; otherwise the
            ground-truth run is retrained with the same reduced steps, for a fair comparison.
        eval_every: held-out evaluation every this many steps (0 = ``[rlhf].eval_every``).
        fa_method: the FA-IRL reward of run (ii) (a method of ``fairl_lib.irl.METHODS``), or ``"auto"``:
            the FA method whose tuned failure path acts and validates best (notebook 04's search,
            :func:`fairl_lib.stages.tuning.best_fa_config`).
        irl_method: the standard IRL reward of run (iii), or ``"auto"``: the baseline of the FA
            method's loss family (Max-Margin or Max-Entropy IRL).
        rewards: which trained rewards the learned runs use: ``"tuned"`` (each method at its tuned
            configuration, notebook 04's best-against-best grid; with Eq. 3 as printed the failure path
            collapses and the FA reward is its baseline) or ``"as_printed"`` (notebook 04's grid with
            the paper's settings, the rewards published under ``results/<profile>/rewards/``).
        reward_seed: which saved reward seed to use (-1 = the run's ``SEED``).
        normalize: ``"match_gt"`` | ``"standardize"`` | ``"none"`` (see the module docstring).
        reuse_expert: allow run (i) to reuse the expert stage when the settings are identical.
        final_samples_per_prompt: completions per held-out prompt in the final evaluation of the
            learned arms. The ground-truth arm, when it is the reused expert, keeps notebook 01's evaluation
            (``data.heldout_samples`` per prompt, same prompts, same sampling seed): its count only enters
            the ground truth's own gap, while the learned arms' counts set the IRL-vs-FA-IRL interval.
        train_seeds: RLHF training runs per learned arm (RLHF seeds ``SEED``, ``SEED + 1``, ...; same
            reward, same prompts): one training run's outcome moves by several points between seeds,
            so the arms' ordering is judged against the spread between runs. The ground-truth arm is
            the expert, one run (another expert seed costs a whole notebook 01).
        workers: train the runs that need training side by side in this many one-thread
            processes (:mod:`fairl_lib.llm.fast.parallel`; on 2 cores two runs side by side take less time than
            one after the other, benchmarks/README.md). 1 = one after the other, in the notebook's process.
    """

    steps: int = 0
    eval_every: int = 0
    fa_method: str = "me_fa_margin"
    irl_method: str = "me_irl"
    reward_seed: int = -1
    rewards: str = "as_printed"
    normalize: str = "match_gt"
    reuse_expert: bool = True
    final_samples_per_prompt: int = 2
    train_seeds: int = 1
    workers: int = 1

    def __post_init__(self) -> None:
        if self.rewards not in ("tuned", "as_printed"):
            raise ValueError(f"rerlhf.rewards={self.rewards!r}; valid: tuned, as_printed")
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"rerlhf.normalize={self.normalize!r}; valid: {', '.join(NORMALIZATIONS)}")
        if self.steps < 0 or self.eval_every < 0 or min(self.final_samples_per_prompt, self.workers,
                                                         self.train_seeds) < 1:
            raise ValueError("rerlhf.steps and eval_every must be >= 0, final_samples_per_prompt, train_seeds and "
                             "workers >= 1")

    def method_of(self, kind: str) -> str | None:
        """The IRL method behind a run kind (None for the ground truth)."""
        check_kind(kind)
        return {"ground_truth": None, "fa_irl": self.fa_method, "irl": self.irl_method}[kind]


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"Unknown re-RLHF run {kind!r}; valid: {', '.join(KINDS)}")


def rerlhf_config(cfg) -> RerlhfConfig:
    """``cfg.rerlhf`` if the section is registered, else the defaults (same steps as the expert)."""
    return cfg.sections.get("rerlhf", RerlhfConfig())


def run_rlhf_config(cfg, train_seed: int = 0):
    """The expert's RLHF settings (``expert.expert_rlhf_config``) with ``[rerlhf]``'s steps/eval_every;
    training run ``train_seed`` (0, 1, ...) of an arm has RLHF seed ``SEED + train_seed``."""

    rc, base = rerlhf_config(cfg), expert_rlhf_config(cfg)
    return dataclasses.replace(base, steps=rc.steps or base.steps, eval_every=rc.eval_every or base.eval_every,
                               seed=base.seed + train_seed)


def arm_runs(cfg, kind: str) -> list[int]:
    """The training runs (``train_seed`` 0, 1, ...) of an arm: ``[rerlhf] train_seeds`` for a learned
    reward, one for the ground truth (the expert)."""
    check_kind(kind)
    return [0] if kind == "ground_truth" else list(range(rerlhf_config(cfg).train_seeds))


def reuses_expert(cfg) -> bool:
    """True when run (i) is exactly the expert stage (same RLHF settings): it is then reused."""

    return rerlhf_config(cfg).reuse_expert and run_rlhf_config(cfg) == expert_rlhf_config(cfg)


# --------------------------------------------------------------------------- the learned text reward


def affine_for(r_learned: np.ndarray, r_gt: np.ndarray | None, normalize: str) -> tuple[float, float]:
    """``(a, b)`` such that ``a * R + b`` is normalised as ``normalize`` says, from rewards of the
    training-pair outputs (``r_learned``) and, for ``"match_gt"``, the ground-truth rewards there.

    A constant learned reward (std 0) keeps ``a = 1`` (nothing to rescale).
    """
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize={normalize!r}; valid: {', '.join(NORMALIZATIONS)}")
    if normalize == "none":
        return 1.0, 0.0
    r = np.asarray(r_learned, dtype=np.float64)
    mu, sd = float(r.mean()), float(r.std())
    if normalize == "standardize":
        tgt_mu, tgt_sd = 0.0, 1.0
    else:
        if r_gt is None:
            raise ValueError("normalize='match_gt' needs the ground-truth rewards of the same outputs")
        g = np.asarray(r_gt, dtype=np.float64)
        tgt_mu, tgt_sd = float(g.mean()), float(g.std())
    a = tgt_sd / sd if sd > 0 else 1.0
    return a, tgt_mu - a * mu


class LearnedTextReward:
    """``texts -> a * R(h(texts)) + b``: a saved IRL reward composed with the frozen embedder.

    Args:
        reward: an ``irl.reward.RewardModel`` (callable on ``(n, d)`` embeddings).
        embedder: anything with ``embed(list[str]) -> (n, d)`` (``models.Embedder``).
        scale, shift: the affine map of :func:`affine_for` (default identity).
    """

    def __init__(self, reward, embedder, scale: float = 1.0, shift: float = 0.0, name: str = "learned") -> None:
        self.reward, self.embedder = reward, embedder
        self.scale, self.shift = float(scale), float(shift)
        self.__name__ = f"irl_reward_{name}"

    def raw(self, texts: Sequence[str]) -> np.ndarray:
        """``R(h(o))`` before the affine map."""
        texts = list(texts)
        if not texts:
            return np.zeros(0)
        return np.asarray(self.reward(self.embedder.embed(texts)), dtype=np.float64)

    def __call__(self, texts: Sequence[str]) -> list[float]:
        return (self.scale * self.raw(texts) + self.shift).tolist()


def arm_method(cfg, kind: str) -> str | None:
    """The IRL method behind a run kind, with ``"auto"`` resolved from notebook 04's search."""
    rc = rerlhf_config(cfg)
    method = rc.method_of(kind)
    if method != "auto":
        return method
    fa, _ = best_fa_config(cfg, pairs_stage(cfg), log=lambda _: None)
    return fa if kind == "fa_irl" else baseline_of(fa)


def reward_dir(cfg, method: str, seed: int | None = None) -> Path:
    """Where notebook 04 saved ``method``'s reward of ``seed`` (default: ``[rerlhf] reward_seed``):
    its tuned grid's folder (``[rerlhf] rewards = "tuned"``) or the published as-printed rewards."""

    rc = rerlhf_config(cfg)
    seed = (cfg.seed if rc.reward_seed < 0 else rc.reward_seed) if seed is None else seed
    if rc.rewards == "tuned":
        return reward_folder(best_stage(cfg, pairs_stage(cfg), log=lambda _: None).folder, method, seed)
    return reward_folder(cfg.results_dir, method, seed)


def _file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def train_pair_rewards(cfg, reward, ps=None) -> tuple[np.ndarray, np.ndarray]:
    """Learned and ground-truth rewards of all training-pair outputs (o_pre and o_post)."""

    ps = ps if ps is not None else pairs_stage(cfg)
    tr = ps.split("train")
    r = np.concatenate([reward(tr.emb_pre), reward(tr.emb_post)]).astype(np.float64)
    g = np.concatenate([tr.df["pre_reward"].to_numpy(), tr.df["post_reward"].to_numpy()]).astype(np.float64)
    return r, g


def learned_text_reward(cfg, method: str, ps=None, embedder=None) -> tuple[LearnedTextReward, dict[str, Any]]:
    """The text reward of ``method`` for re-RLHF, and its description (folder, digest, affine map).

    Raises:
        FileNotFoundError: the reward was not trained yet (run notebook 04 first).
    """

    folder = reward_dir(cfg, method)
    if not (folder / WEIGHT_FILE).exists():
        raise FileNotFoundError(f"No saved {method} reward in {folder}: run notebook 04 (IRL training) "
                                f"for profile {cfg.profile!r} and seed {cfg.seed} first.")
    reward = load_reward(folder)
    rc = rerlhf_config(cfg)
    r, g = train_pair_rewards(cfg, reward, ps)
    a, b = affine_for(r, g, rc.normalize)
    emb = embedder if embedder is not None else Embedder(cfg.models.embedder)
    info = {"method": method, "folder": str(folder), "digest": _file_digest(folder / WEIGHT_FILE),
            "normalize": rc.normalize, "scale": a, "shift": b,
            "train_output_mean_raw": float(r.mean()), "train_output_std_raw": float(r.std()),
            "gt_train_output_mean": float(g.mean()), "gt_train_output_std": float(g.std()),
            "spearman_with_gt_train": _spearman(r, g)}
    return LearnedTextReward(reward, emb, a, b, name=method), info


def reward_failure_path(cfg, method: str, ps=None) -> dict[str, Any]:
    """Does the failure path of the reward a learned arm trains on act on that reward's own training pairs?
    :func:`fairl_lib.analysis.failure_path.flip_shares` of the saved reward (the seed re-RLHF uses) on notebook
    02's training split, and ``acts``; ``{}`` for a reward without a failure path (a baseline)."""
    reward = load_reward(reward_dir(cfg, method))
    if reward.failure is None:
        return {}
    ps = ps if ps is not None else pairs_stage(cfg)
    fs = flip_shares(reward, ps.split("train"))
    return {**fs, "acts": acts(fs["flip_share"], fs["flip_share_init"]), "seed": reward.meta.get("seed")}


def _spearman(a: np.ndarray, b: np.ndarray) -> float:

    return float(spearmanr(a, b).statistic) if len(a) > 2 else math.nan


# --------------------------------------------------------------------------- stages


def eval_fn_with_judge(cfg):
    """``completions -> {tox_rate, tox_mean, judge_rate, judge_mean}``: the expert's periodic
    evaluation (``expert.toxicity_eval_fn``) plus the independent judge (P > 0.5)."""

    gt_eval, judge = toxicity_eval_fn(cfg), get_scorer(cfg.models.judge)

    def evaluate(completions: list[str]) -> dict[str, float]:
        p = np.asarray(judge(completions)["toxic"], dtype=np.float64)
        return {**gt_eval(completions), "judge_rate": float(np.mean(p > JUDGE_THRESHOLD)),
                "judge_mean": float(np.mean(p))}

    return evaluate


def run_settings(cfg, kind: str, reward_info: dict[str, Any] | None = None, train_seed: int = 0) -> dict[str, Any]:
    """The stage key of one re-RLHF run: the expert's settings with this run's RLHF config and reward."""

    check_kind(kind)
    s = expert_settings(cfg)
    s = {**s, "rlhf": rlhf.settings_dict(run_rlhf_config(cfg, train_seed)), "kind": kind, "judge": cfg.models.judge}
    if kind != "ground_truth":
        if reward_info is None:
            raise ValueError(f"run {kind!r} needs reward_info (from learned_text_reward)")
        s.pop("reward_kind", None)
        s["reward"] = {k: reward_info[k] for k in ("method", "digest", "normalize", "scale", "shift")}
        s["embedder"] = cfg.models.embedder
    return s


@dataclass
class RerlhfRun:
    """A finished run: ``policy`` loads with ``models.load_lm``; ``history`` one row per RLHF step."""

    kind: str
    folder: Path
    policy: Path
    history: pd.DataFrame
    info: dict[str, Any]
    reused_expert: bool = False
    train_seed: int = 0


def rerlhf_stage(cfg, kind: str, ps=None, embedder=None, train_seed: int = 0) -> RerlhfRun:
    """Train (or reuse) re-RLHF run ``kind`` (``ground_truth`` | ``fa_irl`` | ``irl``), training run
    ``train_seed`` of its arm (:func:`arm_runs`)."""

    check_kind(kind)
    if kind == "ground_truth" and train_seed == 0 and reuses_expert(cfg):
        ex = load_expert(expert_stage(cfg))
        return RerlhfRun(kind, ex.folder, ex.policy, ex.history, {"reused_expert": True, **ex.info}, True)
    info: dict[str, Any] = {}
    if kind == "ground_truth":
        reward = toxicity_reward(cfg.models.ground_truth, REWARD_KIND)
    else:
        reward, info = learned_text_reward(cfg, arm_method(cfg, kind), ps, embedder)
    settings = run_settings(cfg, kind, info or None, train_seed)

    def compute(work: Path) -> None:
        train, held = rlhf_prompts(cfg)
        rlhf.train_policy(settings["base_lm"], list(train["prompt"]), reward, run_rlhf_config(cfg, train_seed),
                          work / "rlhf", eval_prompts=list(held["prompt"]), eval_fn=eval_fn_with_judge(cfg),
                          source=settings["source"], label=f"rerlhf {run_label(kind, train_seed)}")
        write_json(work / "rerlhf.json", {"settings": settings, "reward": info, "n_train_prompts": len(train),
                                          "n_heldout_prompts": len(held)})

    folder = cached_stage(cfg, STAGE, settings, compute, version=STAGE_VERSION)
    meta = {**read_json(folder / "rlhf" / "rlhf.json"), **read_json(folder / "rerlhf.json")}
    return RerlhfRun(kind, folder, folder / "rlhf" / "policy", pd.read_csv(folder / "rlhf" / "history.csv"), meta,
                     train_seed=train_seed)


def run_label(kind: str, train_seed: int) -> str:
    """``fa_irl`` for an arm's first training run, ``fa_irl/seed+1`` for the next ones."""
    return kind if train_seed == 0 else f"{kind}/seed+{train_seed}"


def evaluate_policy(cfg, run: RerlhfRun) -> dict[str, Any]:
    """Final held-out evaluation of a run with ``expert.evaluate_expert``'s protocol (cached stage).

    ``final_samples_per_prompt`` completions per held-out prompt (``[gen]`` settings, the seed the
    expert's evaluation uses for the expert, so every policy sees the same sampling noise), scored by
    the ground truth and the judge; pooled perplexity under the base model and the share of empty
    completions (a reward-hacked policy can go quiet or degenerate). Returns the summary dict:
    ``toxicity_rate``, ``toxicity_mean``, ``judge_rate``, ``judge_mean``, ``perplexity``,
    ``empty_fraction``, ``n_completions``.
    """

    k = rerlhf_config(cfg).final_samples_per_prompt
    settings = {"run": run.folder.name, "kind": run.kind, "gen": cfg.gen.key(),
                "ground_truth": cfg.models.ground_truth, "judge": cfg.models.judge,
                "toxic_threshold": cfg.models.toxic_threshold, "samples_per_prompt": k, "seed": cfg.seed}

    def compute(work: Path) -> None:

        _, held = rlhf_prompts(cfg)
        prompts = [p for p in held["prompt"] for _ in range(k)]
        base = load_lm(base_name(cfg), source=model_source(cfg))
        lm = load_lm(run.policy)
        comp = generate_sorted(lm, prompts, cfg.gen, cfg.seed * 1000 + 12)
        nll, n_tok = completion_nll(base.model, base.tokenizer, prompts, comp, spec=base.spec)
        p = np.asarray(get_scorer(cfg.models.ground_truth)(comp)["toxic"], dtype=np.float64)
        jp = np.asarray(get_scorer(cfg.models.judge)(comp)["toxic"], dtype=np.float64)
        df = pd.DataFrame({"prompt_id": np.repeat(held["prompt_id"].to_numpy(), k), "prompt": prompts,
                           "completion": comp, "p_toxic": p, "judge_p": jp, "nll_base": nll, "n_tokens": n_tok})
        df.to_parquet(work / "eval.parquet", index=False)
        write_json(work / "summary.json", summarize_completions(df, cfg.models.toxic_threshold))

    folder = cached_stage(cfg, EVAL_STAGE, settings, compute, version=EVAL_VERSION)
    return read_json(folder / "summary.json")


def summarize_completions(df: pd.DataFrame, threshold: float) -> dict[str, Any]:
    """Rates and means of both scorers, pooled perplexity under the base, empty share."""
    return {"toxicity_rate": float((df["p_toxic"] > threshold).mean()), "toxicity_mean": float(df["p_toxic"].mean()),
            "judge_rate": float((df["judge_p"] > JUDGE_THRESHOLD).mean()), "judge_mean": float(df["judge_p"].mean()),
            "perplexity": float(np.exp(df["nll_base"].sum() / max(int(df["n_tokens"].sum()), 1))),
            "empty_fraction": float((df["n_tokens"] == 0).mean()), "n_completions": len(df)}


def base_summary(cfg) -> dict[str, Any]:
    """The base model's held-out numbers, from ``expert.evaluate_expert`` (notebook 01's cached stage)."""

    s = evaluate_expert(cfg).summary
    return {"toxicity_rate": s["toxicity_rate_base"], "toxicity_mean": s["toxicity_mean_base"],
            "judge_rate": s["judge_rate_base"], "judge_mean": s["judge_mean_base"],
            "perplexity": s["perplexity_base"], "empty_fraction": s["empty_fraction_base"],
            "n_completions": s["n_completions_base"]}


def final_summary(cfg, run: RerlhfRun) -> dict[str, Any]:
    """Final held-out numbers of a run; the reused expert takes notebook 01's evaluation (same protocol and
    prompts; ``data.heldout_samples`` completions per prompt, which may differ from the learned arms')."""
    if run.reused_expert:
        s = evaluate_expert(cfg).summary
        return {k: s[f"{k}_expert"] for k in ("toxicity_rate", "toxicity_mean", "judge_rate", "judge_mean",
                                               "perplexity", "empty_fraction", "n_completions")}
    return evaluate_policy(cfg, run)


# --------------------------------------------------------------------------- all three, metrics, plots


def history_curves(history: pd.DataFrame) -> dict[str, list]:
    """The evaluated steps of a history: ``step``, ``tox_rate``, ``tox_mean``, ``judge_rate`` (NaN
    where the run did not record the judge, e.g. a reused expert) and the training ``reward``/``kl``."""
    h = history.dropna(subset=["eval_tox_rate"]) if "eval_tox_rate" in history else history.iloc[:0]
    col = (lambda c: [float(v) for v in h[c]] if c in h else [math.nan] * len(h))
    return {"step": [int(s) for s in h["step"]], "tox_rate": col("eval_tox_rate"), "tox_mean": col("eval_tox_mean"),
            "judge_rate": col("eval_judge_rate")}


def run_all(cfg, kinds: Sequence[str] = KINDS) -> dict[str, list[RerlhfRun]]:
    """The re-RLHF runs (cached), sharing one pair set and one embedder: ``{arm: [run of train seed
    0, 1, ...]}`` (:func:`arm_runs`).

    With ``[rerlhf] workers`` > 1 the runs that train (all but a reused expert) first train side by
    side in worker processes (:func:`fairl_lib.llm.fast.parallel.run_jobs`), each followed by its final
    evaluation (:func:`evaluate_policy`, so the two evaluations also run side by side); then every
    run is read back here from its finished stage (a stage forced and finished by this run is reused,
    :func:`fairl_lib.cache.run_stage`, so nothing trains twice).
    """

    rc = rerlhf_config(cfg)
    jobs = [(k, t) for t in range(max(len(arm_runs(cfg, k)) for k in kinds)) for k in kinds
            if t in arm_runs(cfg, k) and not (k == "ground_truth" and t == 0 and reuses_expert(cfg))]
    if rc.workers > 1 and len(jobs) > 1:
        names = [run_label(k, t) for k, t in jobs]
        print(f"[rerlhf] training {', '.join(names)} in {min(rc.workers, len(jobs))} worker processes", flush=True)
        run_jobs(_train_run, [(cfg, k, t) for k, t in jobs], rc.workers,
                 lambda i, _: print(f"[rerlhf] {names[i]} finished", flush=True))
    ps, emb = None, None
    if any(k != "ground_truth" for k in kinds):
        ps, emb = pairs_stage(cfg), Embedder(cfg.models.embedder)
    return {k: [rerlhf_stage(cfg, k, ps, emb, t) for t in arm_runs(cfg, k)] for k in kinds}


def _train_run(cfg, kind: str, train_seed: int = 0) -> None:
    """Worker job of :func:`run_all`: train (or find) one run's stage, then its final evaluation.

    Its progress lines (``[rerlhf KIND] step k/N ...``, from ``rlhf.train_policy``) are flushed as
    they are printed, so both workers' progress reaches the notebook's output (and the runner's log)
    while they train, not when they exit.
    """
    label = run_label(kind, train_seed)
    emit(f"[rerlhf {label}] started in a worker process")
    run = rerlhf_stage(cfg, kind, train_seed=train_seed)
    if not run.reused_expert:
        emit(f"[rerlhf {label}] final held-out evaluation")
        evaluate_policy(cfg, run)


def final_summaries(cfg, runs: dict[str, list[RerlhfRun]]) -> dict[str, list[dict[str, Any]]]:
    """:func:`final_summary` of every training run of every arm (the same shape as ``runs``)."""
    return {kind: [final_summary(cfg, run) for run in arm] for kind, arm in runs.items()}


def pooled_final(finals: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """An arm's final numbers over its training runs: rates and means averaged over runs (every run
    has the same number of completions, so this is the pooled rate), completions summed, and the
    spread between runs (max - min toxicity rate; NaN with one run)."""
    rates = [f["toxicity_rate"] for f in finals]
    out = {k: float(np.mean([f[k] for f in finals])) for k in ("toxicity_rate", "toxicity_mean", "judge_rate",
                                                                 "judge_mean", "perplexity", "empty_fraction")}
    out["n_completions"] = int(sum(f["n_completions"] for f in finals))
    out["between_run_spread"] = float(max(rates) - min(rates)) if len(rates) > 1 else math.nan
    return out


def rerlhf_metrics(cfg, runs: dict[str, list[RerlhfRun]], finals: dict[str, list[dict[str, Any]]],
                   base: dict[str, Any]) -> dict[str, Any]:
    """``metrics/08_rerlhf.json``: per arm the final rates pooled over its training runs (final
    evaluation), each run's own numbers (``runs``), the spread between runs, the paper's rate, the first
    run's history and last in-training evaluation, the reward's description; plus the base rates. The FA
    arm also has ``failure_path`` (:func:`reward_failure_path`): whether its reward's R_F acts on its pairs."""
    rc = rerlhf_config(cfg)
    out: dict[str, Any] = {"base": {k: base[k] for k in ("toxicity_rate", "judge_rate", "toxicity_mean", "perplexity")}}
    for kind, arm in runs.items():
        f, first = pooled_final(finals[kind]), arm[0]
        curves = history_curves(first.history)
        reward = first.info.get("reward", {}) if kind != "ground_truth" else {"method": "ground_truth",
                                                                              "scorer": cfg.models.ground_truth}
        out[kind] = {
            "toxicity_rate_final": f["toxicity_rate"], "judge_rate_final": f["judge_rate"],
            "toxicity_mean_final": f["toxicity_mean"], "perplexity_final": f["perplexity"],
            "empty_fraction_final": f["empty_fraction"], "n_completions_final": f["n_completions"],
            "n_runs": len(arm), "between_run_spread": f["between_run_spread"],
            "runs": [{"train_seed": run.train_seed, "rlhf_seed": cfg.seed + run.train_seed,
                      "toxicity_rate": g["toxicity_rate"], "judge_rate": g["judge_rate"],
                      "n_completions": g["n_completions"], "perplexity": g["perplexity"],
                      "kl_final": _last_mean(run.history, "kl"), "folder": run.folder.name}
                     for run, g in zip(arm, finals[kind])],
            "paper_toxicity_rate": PAPER_RATES[kind],
            "train_eval_tox_rate_last": curves["tox_rate"][-1] if curves["step"] else math.nan,
            "history": curves,
            "kl_final": float(np.mean([_last_mean(run.history, "kl") for run in arm])),
            "reward_final": float(np.mean([_last_mean(run.history, "reward") for run in arm])),
            "reused_expert": first.reused_expert, "reward": reward,
        }
    if "fa_irl" in out:
        out["fa_irl"]["failure_path"] = reward_failure_path(cfg, arm_method(cfg, "fa_irl"))
    out["settings"] = {"rlhf": rlhf.settings_dict(run_rlhf_config(cfg)), "rerlhf": dataclasses.asdict(rc),
                       "base_lm": cfg.models.base_lm, "ground_truth": cfg.models.ground_truth,
                       "judge": cfg.models.judge}
    out["refusal_correctness"] = "not measured: the paper names it but does not define it"
    return out


def _last_mean(history: pd.DataFrame, col: str, last: int = 5) -> float:
    if col not in history:
        return math.nan
    v = history.loc[history["step"] > 0, col].dropna()
    return float(v.tail(last).mean()) if len(v) else math.nan


LABELS = {"ground_truth": "ground-truth reward", "fa_irl": "FA-IRL reward", "irl": "standard IRL reward"}


def plot_toxicity_over_training(runs: dict[str, list[RerlhfRun]], finals: dict[str, list[dict[str, Any]]],
                                base: dict[str, Any], gt_name: str = "ground truth", judge_name: str = "judge"):
    """Figure 3 (right): held-out toxicity rate over re-RLHF steps, by the ground truth (left) and the
    independent judge (middle), one line per training run; final rates (pooled over an arm's runs, each
    run a dot) beside the paper's (right)."""

    fig, axes = plt.subplots(1, 3, figsize=(15, 4), gridspec_kw={"width_ratios": [1.2, 1.2, 1]})
    colors = {"ground_truth": "C0", "fa_irl": "C2", "irl": "C3"}
    for kind, arm in runs.items():
        for run, fin in zip(arm, finals[kind]):
            c = history_curves(run.history)
            label = LABELS[kind] if run.train_seed == 0 else None
            style = {"marker": "o", "color": colors[kind], "alpha": 1.0 if run.train_seed == 0 else 0.5}
            axes[0].plot(c["step"], c["tox_rate"], label=label, **style)
            if not all(math.isnan(v) for v in c["judge_rate"]):
                axes[1].plot(c["step"], c["judge_rate"], label=label, **style)
            elif run.reused_expert:
                axes[1].scatter([c["step"][-1]], [fin["judge_rate"]], marker="*", s=120, color=colors[kind],
                                label=f"{LABELS[kind]} (final only)")
    for ax, key, who in ((axes[0], "toxicity_rate", gt_name), (axes[1], "judge_rate", judge_name)):
        ax.axhline(base[key], color="k", ls="--", lw=1, label="base model (final eval.)")
        ax.set(xlabel="re-RLHF step", ylabel="held-out toxicity rate", ylim=(0, None),
               title=f"measured by {who}")
        ax.legend(fontsize=8)
    kinds = list(runs)
    x = np.arange(len(kinds))
    for i, (key, lab) in enumerate((("toxicity_rate", gt_name), ("judge_rate", judge_name))):
        pooled = [pooled_final(finals[k])[key] for k in kinds]
        bars = axes[2].bar(x + (i - 1) * 0.27, pooled, width=0.27, label=f"here, {lab}")
        axes[2].bar_label(bars, fmt="%.3f", fontsize=7)
        for j, k in enumerate(kinds):
            if len(finals[k]) > 1:
                axes[2].scatter([x[j] + (i - 1) * 0.27] * len(finals[k]), [f[key] for f in finals[k]], s=12,
                                color="k", zorder=3, label="one training run" if (i, j) == (0, 1) else None)
    bars = axes[2].bar(x + 0.27, [PAPER_RATES[k] for k in kinds], width=0.27, color="0.6", label="paper (RoBERTa)")
    axes[2].bar_label(bars, fmt="%.2f", fontsize=7)
    axes[2].set(xticks=x, xticklabels=[LABELS[k].replace(" reward", "") for k in kinds], ylabel="final toxicity rate",
                title="final rates vs the paper")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    return fig


def final_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """One row per run (and the base): final rates by both scorers, perplexity, KL, the paper's rate."""
    rows = [{"run": "base model", "toxicity_rate": metrics["base"]["toxicity_rate"],
             "judge_rate": metrics["base"]["judge_rate"], "perplexity": metrics["base"]["perplexity"],
             "kl_final": 0.0, "paper_toxicity_rate": math.nan, "training_runs": 0, "completions": math.nan,
             "run_rates": "", "between_run_spread": math.nan}]
    for kind in KINDS:
        if kind in metrics:
            m = metrics[kind]
            rows.append({"run": LABELS[kind], "toxicity_rate": m["toxicity_rate_final"],
                         "judge_rate": m["judge_rate_final"], "perplexity": m["perplexity_final"],
                         "kl_final": m["kl_final"], "paper_toxicity_rate": m["paper_toxicity_rate"],
                         "training_runs": m["n_runs"], "completions": m["n_completions_final"],
                         "run_rates": " / ".join(f"{r['toxicity_rate']:.3f}" for r in m["runs"]),
                         "between_run_spread": m["between_run_spread"]})
    return pd.DataFrame(rows).set_index("run")


def stage_keys(cfg, reward_infos: dict[str, dict[str, Any]] | None = None) -> dict[str, str]:
    """The stage key of each run (for tests and reports); learned runs need their reward info."""
    reward_infos = reward_infos or {}
    out = {}
    for kind in KINDS:
        if kind == "ground_truth" or kind in reward_infos:
            out[kind] = stage_key(STAGE, run_settings(cfg, kind, reward_infos.get(kind)), STAGE_VERSION)
    return out
