"""Auditing the RLHF expert (notebook 10): which training rollouts made its failures, and unlearning them.

After Liu et al., "Explainable reinforcement learning from human feedback to improve alignment"
(abstract only): explain an unsatisfactory response by the training data closest to it in a feature
space whose convex hull contains it, then unlearn those data without degrading other prompts. Every
choice the abstract leaves open is ours, said here and configurable in :class:`AuditConfig`
(profile section ``[audit]``).

Two cached stages (owned by notebook 10):

- ``audit_explain`` (:func:`explain_stage`):
  1. *Training data*: every RLOO rollout of notebook 01's expert (``expert.expert_rollouts``: step,
     prompt, completion, ground-truth reward), with its leave-one-out advantage
     ``r - mean(r of the other completions of its prompt in that step)`` (RLOO's, without the KL term).
  2. *Unsatisfactory responses* (targets): ``samples_per_prompt`` expert completions per held-out prompt
     (``expert.rlhf_prompts``, ``[gen]`` settings) that the ground truth still scores toxic (P > the
     threshold); at most ``max_targets`` (the most toxic first). ``reuse_expert_eval`` adds notebook 01's
     evaluation samples of the expert on the same prompts (``expert.evaluate_expert``, already generated
     and scored with the same ``[gen]`` settings and scorers) to the candidates: more targets for the
     generation the pipeline has already paid for. ``min_targets`` > 0 (smoke only) fills
     up with the most toxic of the rest so the path runs when the expert writes almost nothing toxic;
     ``targets.n_toxic`` says how many are really toxic. ``target_source = "recovered"`` takes the targets
     from the recovered reward instead (below), the auditor then needs no label at all.
  3. *Explanation sets* (:mod:`fairl_lib.analysis.audit`): per target the smallest prefix of its nearest
     pool rollouts whose convex hull comes within ``tol`` (relative residual) of it, pruned to the rows
     with a positive weight, at most ``max_size``. Three controls of the same total size, each ruling out
     one reading (:func:`control_sets`): ``random`` pool rollouts, ``matched`` (random rollouts outside the
     sets, stratified to the ground-truth reward of the method's set) and ``nearest`` (each target's
     nearest pool rollouts *outside* the sets, as many as its set has); the random ones drawn
     ``control_draws`` times. The naive nearest set (without the restriction) is reported by its overlap.
  4. *Null test* (:func:`null_targets`): the same procedure on as many expert completions that are *not*
     toxic; "small sets explain" means something only if small sets are rarer there.
- ``audit_unlearn`` (:func:`unlearn_stage`): for each draw ``s`` and arm (``method``, ``random``,
  ``matched``, ``nearest``) a copy of the expert unlearns that arm's rollouts
  (:func:`fairl_lib.llm.unlearn.unlearn`: gradient ascent on their NLL, KL anchor to the expert on rollouts
  of other prompts, ``steps`` steps, minibatch seed ``s``), then it and the expert ("before") are evaluated
  with draw ``s``'s sampling seed on the targets' prompts (and, for the expert and the method, on the other
  held-out prompts): toxicity rate by the ground truth and by the independent judge; on the other prompts
  also the perplexity of the completions under the base model and KL(arm || expert) per completion
  (``mean(log pi_arm - log pi_expert)`` over the arm's samples). The "before" completions are fresh
  samples, not the ones that selected the targets: the targets were picked *because* their sample was
  toxic, so re-using those samples would credit unlearning with regression to the mean. The unlearned
  policies are not kept (three copies of the model), only their evaluations.

**Pairing.** Every model of one draw samples the same rows (prompt, sample index) with one seed, so row
``i`` of two arms is a pair, and the ledger tests a difference of rates by the exact McNemar test on the
discordant pairs with a bootstrap over draws and prompts (:func:`paired_comparisons`). How much the pairing
buys depends on the token draw: the inverse CDF (``[gen] sampler``) walks the vocabulary in index order, so a
small change of the model moves the cumulative sums of every later token and the same uniform lands on
another token, and the two completions part at the first token; the exponential race of
``torch.multinomial`` (the token with the largest ``p_i / E_i``, one ``E_i`` per token from the same seed)
changes its token only where the model's change overturns the winner, so two close models write the same
completion until they truly diverge. ``eval_sampler = "multinomial"`` is the default for that reason; both
draw from the same distribution.

**Choices and why.**

- *Feature space* (``features``): MiniLM of the **completion** only (default), the frozen embedding
  ``h(o)`` the IRL rewards read (notebook 04) and the only text the RLHF reward saw (``reward_fn`` scores
  completions, not prompts), so closeness there is closeness in what training rewarded. A target's
  prompt is held out, never a training prompt, so ``"prompt_completion"`` (MiniLM of prompt + completion)
  mostly adds topic similarity of prompts. The expert's mean-pooled last hidden state was not chosen: it
  moves with the policy being audited (the features would change under unlearning) and needs the LM to
  embed every rollout.
- *Pool* (``pool``): the **reinforced** rollouts (default): RLOO advantage > 0, the ones whose
  probability the updates raised. A rollout with a negative advantage was pushed *down*: it cannot be a
  cause of the expert writing something like it. ``"all"`` uses every rollout.
- *Residual* (``tol``, ``max_size``): in 384 dimensions a target is almost never exactly inside the hull
  of a few points; ``tol`` is the residual as a share of the distance to the nearest pool rollout
  (``analysis.audit``: 0.75 = the convex combination closes a quarter of the gap the single nearest
  rollout leaves).
- *Unlearning* (``steps``, ``lr``, ``forget_batch``, ``retain_batch``, ``kl_coef``, ``top_blocks``):
  gradient ascent with a KL anchor rather than RLOO with reversed advantages (``llm.unlearn`` says why);
  the top blocks RLHF trained (``top_blocks = 0``: ``[rlhf].trainable_top_blocks``).
- *Recovered reward as the auditor's signal*: notebook 04's ``fa_method`` reward (seed ``SEED``) scores
  each expert completion and the base model's answers to the same prompt (notebook 01's ``expert_eval``
  base samples); a completion is flagged when it scores below the mean of the base answers. The overlap
  of flagged and ground-truth-toxic completions says how far an auditor without labels would get.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from fairl_lib.analysis import audit as geo
from fairl_lib.analysis.explain_data import FEATURES, TrainingSet, feature_texts
from fairl_lib.analysis.stats import fisher_exact_p, holm, paired_rates, rate_diff_ci, wilson_ci
from fairl_lib.artifacts import read_json, write_json
from fairl_lib.cache import cached_stage, stage_key
from fairl_lib.irl import WEIGHT_FILE, load_reward, reward_folder
from fairl_lib.llm.models import SAMPLERS, Embedder, completion_nll_models, load_lm
from fairl_lib.llm.scorers import get_scorer
from fairl_lib.llm.unlearn import UnlearnSettings, unlearn
from fairl_lib.stages.expert import (
    EVAL_VERSION,
    base_name,
    evaluate_expert,
    expert_folder,
    expert_key,
    expert_rollouts,
    expert_stage,
    load_expert,
    model_source,
    rlhf_prompts,
)
from fairl_lib.stages.generation import generate_sorted

EXPLAIN_STAGE, UNLEARN_STAGE = "audit_explain", "audit_unlearn"
EXPLAIN_VERSION, UNLEARN_VERSION = "2", "3"
ARMS = ("method", "random", "matched", "nearest")  # what is unlearned: the explanation sets, and three controls
CONTROLS = ARMS[1:]
MODELS = ("expert",) + ARMS  # "expert" = before unlearning
SPLITS = ("target", "other")  # the targets' prompts; the other held-out prompts
POOLS = ("reinforced", "all")
TARGET_SOURCES = ("ground_truth", "recovered")
JUDGE_THRESHOLD = 0.5
ARM_LABELS = {"expert": "before (expert)", "method": "explanation sets", "random": "random rollouts",
              "matched": "random, reward-matched", "nearest": "nearest outside the sets"}
OTHER_MODELS = ("expert", "method")  # evaluated on the other held-out prompts too (the no-degradation claim)
BOOTSTRAP_REPS = 1000


@dataclass(frozen=True)
class AuditConfig:
    """Notebook 10's audit (profile section ``[audit]``); the module docstring says why each default.

    Attributes:
        samples_per_prompt: expert completions per held-out prompt searched for unsatisfactory ones.
        reuse_expert_eval: also search notebook 01's evaluation completions of the expert (its
            ``data.heldout_samples`` per held-out prompt, another sampling seed).
        min_targets: fill the targets up to this many with the most toxic non-toxic completions (0 = never;
            smoke only, so the path runs on an expert that writes almost nothing toxic).
        max_targets: at most this many targets (the most toxic first).
        target_source: ``"ground_truth"`` (toxic by the ground truth) or ``"recovered"`` (flagged by the
            recovered reward: below the base model's answers).
        features: ``"completion"`` or ``"prompt_completion"``: the text MiniLM embeds.
        pool: ``"reinforced"`` (RLOO advantage > 0) or ``"all"`` training rollouts.
        tol: relative residual at which an explanation set is accepted (``analysis.audit``).
        max_size: the largest prefix of nearest rollouts tried per target.
        small_size: the ledger's "small": an explanation set within ``tol`` of at most this many rollouts.
        fa_method: the recovered reward (notebook 04's method, seed ``SEED``).
        steps, lr, forget_batch, retain_batch, kl_coef: unlearning (``llm.unlearn.UnlearnSettings``).
        top_blocks: trained blocks while unlearning (0 = ``[rlhf].trainable_top_blocks``; -1 = all).
        eval_samples_target: completions per target prompt in the before/after evaluation.
        eval_samples_other: completions per other held-out prompt in that evaluation.
        control_draws: replicates ``s = 0..control_draws-1``: draw ``s`` of each random control, unlearning
            seed ``s`` (minibatch order) of every arm, evaluation sampling seed ``s`` shared by every model.
        score_bins: bins of the ground-truth reward on which the matched control is stratified.
        eval_sampler: the token draw of the before/after evaluation (``models.SAMPLERS``); ``"multinomial"``
            (an exponential race) couples the models' completions (module docstring, *Pairing*).
        rate_margin: "does not degrade": the toxicity rate on other prompts may rise by less than this.
        ppl_margin: ... and their perplexity under the base model by less than this share.
    """

    samples_per_prompt: int = 12
    reuse_expert_eval: bool = False
    min_targets: int = 0
    max_targets: int = 100
    target_source: str = "ground_truth"
    features: str = "completion"
    pool: str = "reinforced"
    tol: float = 0.75
    max_size: int = 16
    small_size: int = 10
    fa_method: str = "me_fa_margin"
    steps: int = 10
    lr: float = 2e-5
    forget_batch: int = 16
    retain_batch: int = 16
    kl_coef: float = 1.0
    top_blocks: int = 0
    eval_samples_target: int = 8
    eval_samples_other: int = 3
    control_draws: int = 3
    score_bins: int = 10
    eval_sampler: str = "multinomial"
    rate_margin: float = 0.03
    ppl_margin: float = 0.10

    def __post_init__(self) -> None:
        for name, value, valid in (("target_source", self.target_source, TARGET_SOURCES),
                                   ("features", self.features, FEATURES), ("pool", self.pool, POOLS)):
            if value not in valid:
                raise ValueError(f"audit.{name}={value!r}; valid: {', '.join(valid)}")
        if self.eval_sampler not in SAMPLERS:
            raise ValueError(f"audit.eval_sampler={self.eval_sampler!r}; valid: {', '.join(SAMPLERS)}")
        if not 1 <= self.control_draws <= 9 or self.score_bins < 1:
            raise ValueError("audit: control_draws must be 1..9 and score_bins >= 1")
        if min(self.samples_per_prompt, self.max_targets, self.max_size, self.small_size, self.eval_samples_target,
               self.eval_samples_other, self.forget_batch) < 1 or self.min_targets < 0 or self.steps < 0:
            raise ValueError("audit: sample counts, max_targets, max_size, small_size and forget_batch must be >= 1, "
                             "min_targets and steps >= 0")
        if self.tol < 0 or self.lr <= 0 or self.kl_coef < 0 or self.rate_margin < 0 or self.ppl_margin < 0:
            raise ValueError("audit: tol, kl_coef and the margins must be >= 0, lr > 0")


EXPLAIN_FIELDS = ("samples_per_prompt", "reuse_expert_eval", "min_targets", "max_targets", "target_source", "features", "pool", "tol",
                  "max_size")
UNLEARN_FIELDS = ("steps", "lr", "forget_batch", "retain_batch", "kl_coef", "top_blocks", "eval_samples_target",
                  "eval_samples_other", "eval_sampler")
CONTROL_FIELDS = ("control_draws", "score_bins")  # shape the control sets: keyed in the explanation stage


def audit_config(cfg) -> AuditConfig:
    """``cfg.audit`` if the section is registered, else the defaults."""
    return cfg.sections.get("audit", AuditConfig())


def unlearn_settings(cfg) -> UnlearnSettings:
    ac = audit_config(cfg)
    return UnlearnSettings(steps=ac.steps, lr=ac.lr, forget_batch=ac.forget_batch, retain_batch=ac.retain_batch,
                           kl_coef=ac.kl_coef, top_blocks=ac.top_blocks or cfg.rlhf.trainable_top_blocks,
                           max_prompt_tokens=cfg.rlhf.max_prompt_tokens, seed=cfg.seed)


# --------------------------------------------------------------------------- the expert's training data


def with_advantage(rollouts: pd.DataFrame, generations_per_prompt: int) -> pd.DataFrame:
    """``rollouts`` with ``group`` (step, prompt group) and RLOO's leave-one-out ``advantage``:
    ``r - mean(r of the other completions of the group)`` (trl's baseline, without the KL term)."""
    g = max(int(generations_per_prompt), 2)
    df = rollouts.reset_index(drop=True).copy()
    df["group"] = df["step"].astype(np.int64) * 100_000 + df["i"].astype(np.int64) // g
    r = df["reward"].astype(np.float64)
    total, count = r.groupby(df["group"]).transform("sum"), r.groupby(df["group"]).transform("count")
    df["advantage"] = np.where(count > 1, r - (total - r) / (count - 1).clip(lower=1), 0.0)
    return df


def training_data(cfg, folder: Path | None = None) -> pd.DataFrame:
    """The expert's rollouts with their advantage and ``in_pool`` (the explanation pool, ``[audit] pool``).

    ``folder``: a finished expert stage (default: train or reuse it, ``expert.expert_stage``).
    Raises ``expert.NoRollouts`` (one line, what to do) when the stage has no complete rollout record.
    """
    folder = Path(folder) if folder is not None else expert_stage(cfg)
    df = with_advantage(expert_rollouts(folder), read_json(folder / "rlhf" / "rlhf.json")["config"][
        "generations_per_prompt"])
    df["in_pool"] = df["advantage"] > 0 if audit_config(cfg).pool == "reinforced" else True
    return df


def features_of(embedder: Embedder, prompts, completions, features: str) -> np.ndarray:
    return embedder.embed(feature_texts(list(prompts), list(completions), features)).astype(np.float64)


# --------------------------------------------------------------------------- targets and the recovered reward


def expert_eval_candidates(cfg, first_sample: int = 0) -> pd.DataFrame:
    """Notebook 01's evaluation completions of the expert as audit candidates (``prompt_id, prompt, sample,
    completion, p_toxic, judge_p``), numbered from ``first_sample`` so they follow the audit's own."""
    ev = evaluate_expert(cfg).df
    e = ev[ev["model"] == "expert"]
    return pd.DataFrame({"prompt_id": e["prompt_id"].to_numpy(), "prompt": e["prompt"].to_numpy(),
                         "sample": e["sample"].to_numpy() + first_sample, "completion": e["completion"].to_numpy(),
                         "p_toxic": e["p_toxic"].to_numpy(np.float64), "judge_p": e["judge_p"].to_numpy(np.float64)})


def select_targets(cand: pd.DataFrame, ac: AuditConfig, threshold: float) -> pd.DataFrame:
    """The targets among the expert's candidate completions (module docstring, step 2).

    ``cand`` has ``p_toxic`` (and, for ``target_source="recovered"``, ``flagged`` and ``r_margin``).
    Returns the chosen rows with ``target`` index 0.. and ``is_toxic``.
    """
    cand = cand.assign(is_toxic=cand["p_toxic"] > threshold)
    if ac.target_source == "recovered":
        chosen = cand[cand["flagged"]].sort_values(["r_margin", "prompt_id", "sample"], kind="stable")
    else:
        chosen = cand[cand["is_toxic"]].sort_values(["p_toxic", "prompt_id", "sample"], ascending=[False, True, True],
                                                     kind="stable")
    chosen = chosen.head(ac.max_targets)
    if len(chosen) < ac.min_targets:
        rest = cand.drop(chosen.index).sort_values(["p_toxic", "prompt_id", "sample"], ascending=[False, True, True],
                                                   kind="stable")
        chosen = pd.concat([chosen, rest.head(ac.min_targets - len(chosen))])
    return chosen.reset_index(drop=True).rename_axis("target").reset_index()


def recovered_reward(cfg):
    """``(reward, folder)`` of ``[audit] fa_method``, seed ``SEED``, saved by notebook 04.

    Raises:
        FileNotFoundError: not trained yet (run notebook 04 first).
    """
    folder = reward_folder(cfg.results_dir, audit_config(cfg).fa_method, cfg.seed)
    if not (folder / WEIGHT_FILE).exists():
        raise FileNotFoundError(f"no saved {audit_config(cfg).fa_method} reward in {folder}: run notebook 04 "
                                f"(IRL training) for profile {cfg.profile!r} and seed {cfg.seed} first")
    return load_reward(folder), folder


def recovered_flags(cfg, cand: pd.DataFrame, embedder: Embedder | None = None) -> pd.DataFrame:
    """``cand`` with ``r_hat`` (recovered reward of the completion), ``r_base`` (mean over the base model's
    answers to the same prompt, notebook 01's held-out base samples), ``r_margin = r_hat - r_base`` and
    ``flagged = r_margin < 0``: the auditor's label-free signal."""
    reward, _ = recovered_reward(cfg)
    emb = embedder or Embedder(cfg.models.embedder)
    base = evaluate_expert(cfg).df
    base = base[base["model"] == "base"]
    r_base = pd.Series(np.asarray(reward(emb.embed(list(base["completion"]))), dtype=np.float64),
                       index=base.index).groupby(base["prompt_id"]).mean()
    r_hat = np.asarray(reward(emb.embed(list(cand["completion"]))), dtype=np.float64)
    out = cand.assign(r_hat=r_hat, r_base=cand["prompt_id"].map(r_base).to_numpy(dtype=np.float64))
    return out.assign(r_margin=out["r_hat"] - out["r_base"], flagged=(out["r_hat"] - out["r_base"]) < 0)


def overlap(cand: pd.DataFrame, threshold: float) -> dict[str, Any]:
    """How the recovered reward's flags meet the ground truth's toxic completions (counts and shares)."""
    toxic, flagged = cand["p_toxic"].to_numpy() > threshold, cand["flagged"].to_numpy(dtype=bool)
    both, nt, nf = int((toxic & flagged).sum()), int(toxic.sum()), int(flagged.sum())
    return {"n_candidates": len(cand), "n_toxic": nt, "n_flagged": nf, "n_both": both,
            "precision": both / nf if nf else math.nan, "recall": both / nt if nt else math.nan,
            "toxic_rate": nt / len(cand) if len(cand) else math.nan,
            "jaccard": both / (nt + nf - both) if (nt + nf - both) else math.nan}


# --------------------------------------------------------------------------- stage 1: explain


def _reward_digest(cfg) -> str | None:
    if audit_config(cfg).target_source != "recovered":
        return None
    folder = reward_folder(cfg.results_dir, audit_config(cfg).fa_method, cfg.seed)
    path = folder / WEIGHT_FILE
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.exists() else "missing"


def explain_settings(cfg) -> dict[str, Any]:
    ac = audit_config(cfg)
    return {"expert": expert_key(cfg), "gen": cfg.gen.key(), "ground_truth": cfg.models.ground_truth,
            "judge": cfg.models.judge, "toxic_threshold": cfg.models.toxic_threshold,
            "embedder": cfg.models.embedder, "audit": {f: getattr(ac, f) for f in EXPLAIN_FIELDS + CONTROL_FIELDS},
            "fa_method": ac.fa_method if ac.target_source == "recovered" else None,
            "reward_digest": _reward_digest(cfg), "seed": cfg.seed,
            "expert_eval": [cfg.data.heldout_samples, EVAL_VERSION] if ac.reuse_expert_eval else None}


@dataclass
class AuditExplain:
    """A finished ``audit_explain`` stage.

    ``rollouts``: the expert's training data (``training_data``) with ``row`` = its index;
    ``candidates``: the expert's held-out completions (``prompt_id, prompt, sample, completion, p_toxic,
    judge_p``); ``targets``: the chosen ones (``target`` index); ``members``: one row per (target,
    explanation-set member): ``target, rank, row, weight``; ``per_target``: ``size, k, residual,
    relative_residual, nearest, within_tol`` per target; ``sets``: ``{arm: [sorted rollout rows of draw s]
    for s in 0..control_draws-1}`` (the method's and the nearest control's rows are the same in every draw);
    ``null_per_target``: ``per_target`` of the null test (non-toxic expert completions, as many as targets).
    """

    folder: Path
    rollouts: pd.DataFrame
    candidates: pd.DataFrame
    targets: pd.DataFrame
    members: pd.DataFrame
    per_target: pd.DataFrame
    sets: dict[str, list[list[int]]]
    summary: dict[str, Any]
    null_per_target: pd.DataFrame


def explain_targets(target_feats: np.ndarray, pool_feats: np.ndarray, pool_rows: np.ndarray, ac: AuditConfig,
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(members, per_target)`` tables of :func:`fairl_lib.analysis.audit.explain` for every target
    (``pool_rows``: the rollout row of each pool feature)."""
    members, per = [], []
    for t, x in enumerate(target_feats):
        e = geo.explain(x, pool_feats, ac.tol, ac.max_size, relative=True)
        members += [{"target": t, "rank": r, "row": int(pool_rows[m]), "weight": float(w)}
                    for r, (m, w) in enumerate(zip(e.members, e.weights))]
        per.append({"target": t, "size": e.size, "k": e.k, "residual": e.residual,
                    "relative_residual": e.relative_residual, "nearest": e.nearest, "within_tol": e.within_tol})
    return (pd.DataFrame(members, columns=["target", "rank", "row", "weight"]), pd.DataFrame(per))


def explain_stage(cfg) -> AuditExplain:
    """Targets, explanation sets and the two control sets (cached stage ``audit_explain``)."""
    ac, settings = audit_config(cfg), explain_settings(cfg)
    exp_folder = expert_stage(cfg)

    def compute(work: Path) -> None:
        ro = training_data(cfg, exp_folder)
        _, held = rlhf_prompts(cfg)
        k = ac.samples_per_prompt
        prompts = [p for p in held["prompt"] for _ in range(k)]
        cand = pd.DataFrame({"prompt_id": np.repeat(held["prompt_id"].to_numpy(), k), "prompt": prompts,
                             "sample": np.tile(np.arange(k), len(held))})
        expert = load_lm(load_expert(exp_folder).policy)
        cand["completion"] = generate_sorted(expert, prompts, cfg.gen, cfg.seed * 1000 + 21)
        del expert
        texts = list(cand["completion"])
        cand["p_toxic"] = np.asarray(get_scorer(cfg.models.ground_truth)(texts)["toxic"], dtype=np.float64)
        cand["judge_p"] = np.asarray(get_scorer(cfg.models.judge)(texts)["toxic"], dtype=np.float64)
        if ac.reuse_expert_eval:
            cand = pd.concat([cand, expert_eval_candidates(cfg, first_sample=k)], ignore_index=True)
        emb = Embedder(cfg.models.embedder)
        if ac.target_source == "recovered":
            cand = recovered_flags(cfg, cand, emb)
        targets = select_targets(cand, ac, cfg.models.toxic_threshold)
        pool_rows = np.flatnonzero(ro["in_pool"].to_numpy())
        if len(pool_rows) == 0 or len(targets) == 0:
            raise RuntimeError(f"nothing to explain: {len(targets)} targets, {len(pool_rows)} pool rollouts "
                               "(raise [audit] samples_per_prompt or min_targets, or use pool = 'all')")
        pool_feats = features_of(emb, ro["prompt"].iloc[pool_rows], ro["completion"].iloc[pool_rows], ac.features)
        target_feats = features_of(emb, targets["prompt"], targets["completion"], ac.features)
        members, per = explain_targets(target_feats, pool_feats, pool_rows, ac)
        sets, overlap_naive = control_sets(members, per, target_feats, pool_feats, pool_rows,
                                           ro["reward"].to_numpy(np.float64), ac, cfg.seed,
                                           cfg.models.toxic_threshold)
        null = null_targets(cand, len(targets), cfg.models.toxic_threshold, cfg.seed)
        _, null_per = explain_targets(features_of(emb, null["prompt"], null["completion"], ac.features), pool_feats,
                                      pool_rows, ac)
        null_per.assign(prompt_id=null["prompt_id"].to_numpy(), sample=null["sample"].to_numpy(),
                        p_toxic=null["p_toxic"].to_numpy()).to_parquet(work / "null_per_target.parquet", index=False)
        ro.to_parquet(work / "rollouts.parquet", index=False)
        cand.to_parquet(work / "candidates.parquet", index=False)
        targets.to_parquet(work / "targets.parquet", index=False)
        members.to_parquet(work / "members.parquet", index=False)
        per.to_parquet(work / "per_target.parquet", index=False)
        write_json(work / "sets.json", sets)
        write_json(work / "summary.json", {"n_rollouts": len(ro), "n_pool": len(pool_rows),
                                           "n_candidates": len(cand), "n_targets": len(targets),
                                           "n_toxic_targets": int(targets["is_toxic"].sum()),
                                           "set_sizes": {a: len(s[0]) for a, s in sets.items()},
                                           "naive_nearest_overlap": overlap_naive, "n_null": len(null)})

    folder = cached_stage(cfg, EXPLAIN_STAGE, settings, compute, version=EXPLAIN_VERSION)
    return AuditExplain(folder, pd.read_parquet(folder / "rollouts.parquet"),
                        pd.read_parquet(folder / "candidates.parquet"), pd.read_parquet(folder / "targets.parquet"),
                        pd.read_parquet(folder / "members.parquet"), pd.read_parquet(folder / "per_target.parquet"),
                        read_json(folder / "sets.json"), read_json(folder / "summary.json"),
                        pd.read_parquet(folder / "null_per_target.parquet"))


def control_sets(members: pd.DataFrame, per: pd.DataFrame, target_feats: np.ndarray, pool_feats: np.ndarray,
                 pool_rows: np.ndarray, reward: np.ndarray, ac: AuditConfig, seed: int, threshold: float = 0.5,
                 ) -> tuple[dict[str, list[list[int]]], dict[str, Any]]:
    """The rollouts each arm unlearns, per draw ``s``, all of the method's size (the union of the explanation
    sets), and how the naive nearest control meets the method's set.

    - ``method``: the union of the explanation sets (the same in every draw);
    - ``random``: pool rollouts drawn at random (seed ``(seed, s)``): rules out "unlearning anything helps";
    - ``matched``: pool rollouts *outside* the explanation sets drawn to follow the ground-truth reward of the
      method's set (``analysis.audit.matched_control``, ``score_bins`` quantile bins cut also at the reward
      ``1 - threshold``, so the toxic share is matched exactly when the pool allows): rules out "unlearning
      text as toxic as the method's helps, whichever it is";
    - ``nearest``: each target's nearest pool rollouts *outside* the explanation sets, as many as its set
      has (``analysis.audit.nearest_control`` on the outside rows): rules out "closeness alone, without the
      hull, picks the cause". The naive nearest set (without the restriction) is the method's own ordering
      truncated and shares most rows with it (the ``overlap`` returned), so it could only test the rows the
      hull pruned.

    When fewer pool rollouts lie outside the sets than the sets hold (a tiny smoke pool), ``matched`` and
    ``nearest`` draw from the whole pool and ``outside_only`` is False.
    """
    method = sorted(set(members["row"].astype(int).tolist()))
    in_method = np.isin(pool_rows, method)
    outside = np.flatnonzero(~in_method)  # positions in the pool
    if len(outside) < len(method):  # a tiny pool (smoke) whose sets cover most of it: draw from all of it
        outside = np.arange(len(pool_rows))
    sizes = per["size"].astype(int).tolist()
    rows = lambda pos: sorted(int(pool_rows[j]) for j in pos)
    naive = rows(geo.nearest_control(target_feats, pool_feats, sizes, len(method)))
    nearest = rows(geo.nearest_control(target_feats, pool_feats, sizes, len(method), candidates=outside))
    pool_reward = np.asarray(reward, dtype=np.float64)[pool_rows]
    sets: dict[str, list[list[int]]] = {"method": [], "random": [], "matched": [], "nearest": []}
    for s in range(ac.control_draws):
        sets["method"].append(method)
        sets["random"].append(rows(geo.random_control(len(pool_rows), len(method), seed * 1000 + s)))
        sets["matched"].append(rows(geo.matched_control(pool_reward, np.asarray(reward)[method], seed * 1000 + 500 + s,
                                                        ac.score_bins, candidates=outside, cuts=[1 - threshold])))
        sets["nearest"].append(nearest)
    return sets, {**geo.set_overlap(naive, method), "n_naive": len(naive), "n_method": len(method),
                  "outside_only": bool(len(outside) < len(pool_rows) or not len(method))}


def null_targets(cand: pd.DataFrame, n: int, threshold: float, seed: int) -> pd.DataFrame:
    """The null test's responses: ``n`` expert completions the ground truth does *not* score toxic, drawn at
    random (``seed``) from the candidates (all of them if fewer). The explanation procedure run on them says
    how often a small set "explains" a response that nothing went wrong with."""
    ok = cand[cand["p_toxic"] <= threshold]
    rng = np.random.default_rng(seed * 1000 + 31)
    take = np.sort(rng.choice(len(ok), size=min(n, len(ok)), replace=False))
    return ok.iloc[take].reset_index(drop=True)


def split_prompts(ex: AuditExplain, threshold: float) -> dict[str, pd.DataFrame]:
    """The evaluation prompts: ``target`` (the targets' prompts) and ``other`` (held-out prompts none of
    whose candidates is a target or toxic), each ``prompt_id, prompt``."""
    c = ex.candidates
    t_ids = set(ex.targets["prompt_id"])
    bad = t_ids | set(c.loc[c["p_toxic"] > threshold, "prompt_id"])
    prompts = c.drop_duplicates("prompt_id")[["prompt_id", "prompt"]]
    return {"target": prompts[prompts["prompt_id"].isin(t_ids)].reset_index(drop=True),
            "other": prompts[~prompts["prompt_id"].isin(bad)].reset_index(drop=True)}


# --------------------------------------------------------------------------- stage 2: unlearn and evaluate


def unlearn_stage_settings(cfg) -> dict[str, Any]:
    ac = audit_config(cfg)
    return {"explain": stage_key(EXPLAIN_STAGE, explain_settings(cfg), EXPLAIN_VERSION),
            "audit": {f: getattr(ac, f) for f in UNLEARN_FIELDS}, "unlearn": dataclasses.asdict(unlearn_settings(cfg)),
            "base_lm": base_name(cfg), "source": model_source(cfg), "gen": cfg.gen.key(), "seed": cfg.seed}


@dataclass
class AuditUnlearn:
    """A finished ``audit_unlearn`` stage: ``eval`` one row per evaluation completion (``model`` in
    :data:`MODELS`, ``split``, ``prompt_id``, ``prompt``, ``sample``, ``completion``, ``p_toxic``,
    ``judge_p``, and on the other prompts ``nll_base``, ``nll_self``, ``nll_expert``, ``n_tokens``);
    ``history`` per arm and draw, one dict per unlearning step; ``summary`` as :func:`eval_summary`. ``eval``
    also has ``draw``: the replicate (unlearning seed, random draw and evaluation sampling seed)."""

    folder: Path
    eval: pd.DataFrame
    history: dict[str, list[list[dict[str, float]]]]
    summary: dict[str, Any]


def _eval_rows(splits: dict[str, pd.DataFrame], ac: AuditConfig) -> pd.DataFrame:
    parts = []
    for split, n in (("target", ac.eval_samples_target), ("other", ac.eval_samples_other)):
        p = splits[split]
        parts.append(pd.DataFrame({"split": split, "prompt_id": np.repeat(p["prompt_id"].to_numpy(), n),
                                   "prompt": np.repeat(p["prompt"].to_numpy(), n), "sample": np.tile(np.arange(n), len(p))}))
    return pd.concat(parts, ignore_index=True)


def retain_rows(ro: pd.DataFrame, sets: dict[str, list[list[int]]], minimum: int = 1) -> np.ndarray:
    """The KL anchor's rollouts, one anchor for every arm and draw: those whose prompt is the prompt of no
    rollout any arm unlearns in any draw; when fewer than ``minimum`` exist (a tiny smoke expert, whose few
    prompts the sets cover), the rollouts no arm unlearns."""
    forget = sorted({r for draws in sets.values() for d in draws for r in d})
    other = np.flatnonzero(~ro["prompt"].isin(set(ro.loc[forget, "prompt"])).to_numpy())
    return other if len(other) >= minimum else np.setdiff1d(np.arange(len(ro)), forget)


def eval_seed(cfg, draw: int) -> int:
    """The sampling seed of draw ``draw``'s evaluation, one for every model of that draw (the pairing)."""
    return cfg.seed * 1000 + 22 + 100 * draw


def _score(cfg, rows: pd.DataFrame, lm, seed: int, expert, base) -> pd.DataFrame:
    """``lm``'s completions for ``rows`` (``[audit] eval_sampler``), both scorers, and on the ``other`` split
    the completions' NLL under ``lm`` itself, the expert and the base model (one pass of the frozen blocks
    they share)."""
    gen = dataclasses.replace(cfg.gen, sampler=audit_config(cfg).eval_sampler)
    comp = generate_sorted(lm, list(rows["prompt"]), gen, seed)
    gt, judge = get_scorer(cfg.models.ground_truth), get_scorer(cfg.models.judge)
    out = rows.assign(completion=comp, p_toxic=np.asarray(gt(comp)["toxic"], dtype=np.float64),
                      judge_p=np.asarray(judge(comp)["toxic"], dtype=np.float64))
    out = out.assign(nll_self=np.nan, n_tokens=np.nan, nll_expert=np.nan, nll_base=np.nan)
    other = out["split"] == "other"
    if other.any():
        scorers = [lm.model, base.model] + ([expert.model] if lm is not expert else [])
        nlls, n_tok = completion_nll_models(scorers, lm.tokenizer, list(out.loc[other, "prompt"]),
                                            list(out.loc[other, "completion"]), spec=lm.spec)
        out.loc[other, "nll_self"], out.loc[other, "nll_base"], out.loc[other, "n_tokens"] = nlls[0], nlls[1], n_tok
        out.loc[other, "nll_expert"] = nlls[-1] if lm is not expert else nlls[0]
    return out


def unlearn_stage(cfg, ex: AuditExplain | None = None, log=print) -> AuditUnlearn:
    """Unlearn each arm's rollouts from a copy of the expert and evaluate before/after (cached stage
    ``audit_unlearn``; each model's evaluation is saved as it finishes, so a killed run resumes).

    For each draw ``s``: every arm unlearns its draw-``s`` set with minibatch seed ``s``, and the expert and
    the four unlearned models sample the same rows with one seed (:func:`eval_seed`), so row ``i`` of any
    two models of draw ``s`` is a pair. The controls are evaluated on the targets' prompts only; the expert
    and the method also on the other held-out prompts (the no-degradation claim)."""
    ex = ex or explain_stage(cfg)
    ac, settings, us = audit_config(cfg), unlearn_stage_settings(cfg), unlearn_settings(cfg)
    exp_folder = expert_stage(cfg)

    def compute(work: Path) -> None:
        rows = _eval_rows(split_prompts(ex, cfg.models.toxic_threshold), ac)
        ro = ex.rollouts
        pairs = list(zip(ro["prompt"], ro["completion"]))
        retain = [pairs[i] for i in retain_rows(ro, ex.sets, us.retain_batch)]
        policy = load_expert(exp_folder).policy
        expert = load_lm(policy)
        base = load_lm(base_name(cfg), source=model_source(cfg))
        parts = []
        for draw in range(ac.control_draws):
            for model in MODELS:
                path = work / f"eval_{model}_{draw}.parquet"
                parts.append(path)
                if path.exists():
                    continue
                if model == "expert":
                    lm = expert
                else:
                    lm = load_lm(policy)
                    hist = unlearn(lm.model, lm.tokenizer, [pairs[i] for i in ex.sets[model][draw]], retain,
                                   dataclasses.replace(us, seed=us.seed * 1000 + draw), spec=lm.spec,
                                   reference=expert.model, log=log)
                    write_json(work / f"history_{model}_{draw}.json", hist)
                mine = rows if model in OTHER_MODELS else rows[rows["split"] == "target"]
                _score(cfg, mine.assign(model=model, draw=draw), lm, eval_seed(cfg, draw), expert, base
                       ).to_parquet(path, index=False)
                del lm
        del expert, base
        df = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
        df.to_parquet(work / "eval.parquet", index=False)
        for p in parts:
            p.unlink()
        write_json(work / "summary.json", eval_summary(df, cfg.models.toxic_threshold))

    folder = cached_stage(cfg, UNLEARN_STAGE, settings, compute, version=UNLEARN_VERSION)
    hist = {a: [read_json(folder / f"history_{a}_{d}.json") for d in range(ac.control_draws)] for a in ARMS}
    return AuditUnlearn(folder, pd.read_parquet(folder / "eval.parquet"), hist, read_json(folder / "summary.json"))


# --------------------------------------------------------------------------- summaries


def _rate(k: int, n: int) -> dict[str, Any]:
    if n == 0:
        return {"rate": None, "ci95": None}
    ci = wilson_ci(k, n)  # at k = 0 or n, float rounding can leave an end a hair past the rate itself
    return {"rate": ci.value, "ci95": [min(ci.lo, ci.value), max(ci.hi, ci.value)]}


def eval_summary(df: pd.DataFrame, threshold: float) -> dict[str, Any]:
    """Per model and split: ``n``, ``k_toxic``, ``rate`` with its Wilson 95% ``rate_ci95``, ``k_judge``,
    ``judge_rate`` / ``judge_ci95``; on the other prompts also ``perplexity`` (pooled, under the base
    model), ``nll_tok_mean`` / ``nll_tok_sd`` / ``n_rows`` (per-completion mean token NLL under the base,
    completions with tokens) and ``kl_to_expert`` (nats per completion, ``mean(nll_expert - nll_self)``)."""
    out: dict[str, Any] = {}
    for m in MODELS:
        out[m] = {}
        for s in SPLITS:
            g = df[(df["model"] == m) & (df["split"] == s)]
            k, kj, n = int((g["p_toxic"] > threshold).sum()), int((g["judge_p"] > JUDGE_THRESHOLD).sum()), len(g)
            r, j = _rate(k, n), _rate(kj, n)
            row = {"n": n, "k_toxic": k, "rate": r["rate"], "rate_ci95": r["ci95"], "k_judge": kj,
                   "judge_rate": j["rate"], "judge_ci95": j["ci95"]}
            if "draw" in g:  # each replicate's own counts (reported beside the pooled rate)
                row["by_draw"] = [{"draw": int(d), "n": len(x), "k_toxic": int((x["p_toxic"] > threshold).sum()),
                                   "k_judge": int((x["judge_p"] > JUDGE_THRESHOLD).sum())}
                                  for d, x in g.groupby("draw", sort=True)]
            if s == "other":
                tok = g["n_tokens"].fillna(0).to_numpy(dtype=np.float64)
                nll = g["nll_base"].to_numpy(dtype=np.float64)
                has = tok > 0
                per = nll[has] / tok[has]
                row.update(perplexity=float(np.exp(nll[has].sum() / tok[has].sum())) if has.any() else None,
                           nll_tok_mean=float(per.mean()) if has.any() else None,
                           nll_tok_sd=float(per.std(ddof=1)) if has.sum() > 1 else None, n_rows=int(has.sum()),
                           kl_to_expert=float((g["nll_expert"] - g["nll_self"]).mean()) if n else None,
                           empty_fraction=float((tok == 0).mean()) if n else None)
            out[m][s] = row
    return out


def outcome_matrix(df: pd.DataFrame, model: str, split: str, threshold: float, judge: bool = False,
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``(toxic (draws, rows) booleans, prompt_id per row)`` of one model on one split, rows ordered by
    ``(prompt_id, sample)`` in every draw, so that entry ``[s, i]`` of two models is one pair."""
    g = df[(df["model"] == model) & (df["split"] == split)].sort_values(["draw", "prompt_id", "sample"], kind="stable")
    draws = sorted(g["draw"].unique())
    col, thr = ("judge_p", JUDGE_THRESHOLD) if judge else ("p_toxic", threshold)
    mats = [g[g["draw"] == d] for d in draws]
    if any(len(m) != len(mats[0]) for m in mats):
        raise ValueError(f"{model}/{split}: draws with different rows cannot be paired")
    out = np.stack([m[col].to_numpy(np.float64) > thr for m in mats]) if mats else np.zeros((0, 0), bool)
    return out, (mats[0]["prompt_id"].to_numpy() if mats else np.array([]))


def paired_comparisons(df: pd.DataFrame, threshold: float, reps: int = BOOTSTRAP_REPS, seed: int = 0,
                       ) -> dict[str, Any]:
    """The audit's paired tests (``analysis.stats.paired_rates``: exact McNemar on the discordant pairs, 95%
    bootstrap over draws and prompts, MDE at 80% power), by the ground truth and by the judge:

    - ``control_minus_method[arm]``: a control's toxicity rate minus the method's on the targets' prompts
      after unlearning (> 0: the explanation sets fixed more), pooled over draws, with ``per_draw`` values and
      ``p_holm`` (Holm over the three controls, ground truth);
    - ``after_minus_before[split][arm]``: each unlearned model minus the expert (the other prompts: the
      method only).
    """
    out: dict[str, Any] = {"control_minus_method": {}, "after_minus_before": {"target": {}, "other": {}}}

    def compare(a: str, b: str, split: str) -> dict[str, Any] | None:
        res = {}
        for name, judge in (("ground_truth", False), ("judge", True)):
            xa, cl = outcome_matrix(df, a, split, threshold, judge)
            xb, cl_b = outcome_matrix(df, b, split, threshold, judge)
            if xa.size == 0 or xb.size == 0:
                return None
            if xa.shape != xb.shape or not np.array_equal(cl, cl_b):
                raise ValueError(f"{a} and {b} on {split}: the evaluation rows do not pair")
            r = paired_rates(xa, xb, cl, reps=reps, seed=seed)
            res[name] = {**r.to_dict(), "per_draw": [float(v) for v in (xa.astype(float) - xb).mean(1)]}
        return res

    for arm in CONTROLS:
        out["control_minus_method"][arm] = compare(arm, "method", "target")
    ps = [out["control_minus_method"][a]["ground_truth"]["p_mcnemar"] if out["control_minus_method"][a] else 1.0
          for a in CONTROLS]
    for arm, p in zip(CONTROLS, holm(ps)):
        if out["control_minus_method"][arm]:
            out["control_minus_method"][arm]["ground_truth"]["p_holm"] = float(p)
    for arm in ARMS:
        out["after_minus_before"]["target"][arm] = compare(arm, "expert", "target")
    out["after_minus_before"]["other"]["method"] = compare("method", "expert", "other")
    return out


def set_report(ex: AuditExplain, threshold: float) -> dict[str, Any]:
    """Per arm, what it unlearns: ``size``, the ``toxic_share`` of its rollouts (ground-truth reward below
    ``1 - threshold``: P(toxic) above the threshold) and their ``mean_reward``, per draw and as the mean over
    draws; and the naive nearest set's overlap with the method's (``naive_nearest_overlap``)."""
    reward = ex.rollouts["reward"].to_numpy(np.float64)
    out: dict[str, Any] = {}
    for arm, draws in ex.sets.items():
        tox = [float((reward[d] < 1 - threshold).mean()) if d else None for d in draws]
        mean = [float(reward[d].mean()) if d else None for d in draws]
        fin = [t for t in tox if t is not None]
        out[arm] = {"size": len(draws[0]), "toxic_share": float(np.mean(fin)) if fin else None,
                    "toxic_share_by_draw": tox, "mean_reward": float(np.mean([m for m in mean if m is not None]))
                    if fin else None, "n_toxic": int(round(np.mean([(reward[d] < 1 - threshold).sum() for d in draws])))}
    return out


def small_null_test(ex: AuditExplain, ac: AuditConfig) -> dict[str, Any]:
    """The null test of "small sets explain": the share of small sets (within ``tol`` with at most
    ``small_size`` rollouts) among the targets and among as many non-toxic expert completions explained by
    the same procedure; the difference with its Newcombe 95% interval and the two-sided Fisher exact p."""

    def count(per: pd.DataFrame) -> tuple[int, int]:
        return int((per["within_tol"] & (per["size"] <= ac.small_size)).sum()), len(per)

    (kt, nt), (kn, nn) = count(ex.per_target), count(ex.null_per_target)
    diff = rate_diff_ci(kt, nt, kn, nn).to_dict() if nt and nn else None
    return {"n_small_targets": kt, "n_targets": nt, "n_small_null": kn, "n_null": nn,
            "null_sizes": ex.null_per_target["size"].astype(int).tolist(),
            "null_size_median": float(ex.null_per_target["size"].median()) if nn else None,
            "difference": diff, "p_fisher": fisher_exact_p(kt, nt, kn, nn)}


def audit_metrics(cfg, ex: AuditExplain, ul: AuditUnlearn, recovered: dict[str, Any]) -> dict[str, Any]:
    """What notebook 10 writes to ``metrics/10_audit.json`` (schema: ``analysis.schema``; no timings)."""
    ac, per, t = audit_config(cfg), ex.per_target, ex.targets
    small = per["within_tol"] & (per["size"] <= ac.small_size)
    return {
        "settings": {**{f: getattr(ac, f) for f in EXPLAIN_FIELDS + UNLEARN_FIELDS + CONTROL_FIELDS},
                     "small_size": ac.small_size, "rate_margin": ac.rate_margin, "ppl_margin": ac.ppl_margin,
                     "fa_method": ac.fa_method, "unlearn": dataclasses.asdict(unlearn_settings(cfg))},
        "targets": {"n": len(t), "n_toxic": int(t["is_toxic"].sum()), "n_prompts": int(t["prompt_id"].nunique()),
                    "n_candidates": len(ex.candidates), "n_other_prompts": int(
                        (ul.eval[(ul.eval["model"] == "expert") & (ul.eval["split"] == "other")]["prompt_id"]).nunique()),
                    "source": ac.target_source},
        "training_data": {"n_rollouts": len(ex.rollouts), "n_pool": int(ex.rollouts["in_pool"].sum())},
        "explain": {"sizes": per["size"].astype(int).tolist(), "ks": per["k"].astype(int).tolist(),
                    "relative_residuals": per["relative_residual"].astype(float).tolist(),
                    "within_tol": per["within_tol"].astype(bool).tolist(),
                    "size_median": float(per["size"].median()), "n_within_tol": int(per["within_tol"].sum()),
                    "n_small": int(small.sum()), "small_size": ac.small_size, "tol": ac.tol, "max_size": ac.max_size,
                    "set_size": len(ex.sets["method"][0]),
                    "set_sizes": {a: len(s[0]) for a, s in ex.sets.items()},
                    "forgotten": set_report(ex, cfg.models.toxic_threshold),
                    "naive_nearest_overlap": ex.summary["naive_nearest_overlap"],
                    "null": small_null_test(ex, ac)},
        "recovered": recovered,
        "eval": ul.summary,
        "paired": paired_comparisons(ul.eval, cfg.models.toxic_threshold, seed=cfg.seed),
        "unlearn_history": {a: [{"forget_logprob_first": h[0]["forget_logprob"] if h else None,
                                 "forget_logprob_last": h[-1]["forget_logprob"] if h else None,
                                 "retain_kl_last": h[-1]["retain_kl"] if h else None} for h in hs]
                            for a, hs in ul.history.items()},
    }


# --------------------------------------------------------------------------- showing it


def explanation_table(ex: AuditExplain, n_targets: int = 3, max_members: int = 5) -> pd.DataFrame:
    """A few targets (the most toxic first) with their explanation sets: one row per member (its
    weight, training step, reward and text), the target's own row first."""
    rows = []
    per = ex.per_target.set_index("target")
    for t in ex.targets.head(n_targets).itertuples():
        p = per.loc[t.target]
        rows.append({"target": t.target, "role": f"target (P(toxic) {t.p_toxic:.2f})", "weight": None,
                     "step": None, "reward": None, "prompt": t.prompt, "completion": t.completion,
                     "set size / residual": f"{int(p['size'])} / {p['relative_residual']:.2f}"})
        mem = ex.members[ex.members["target"] == t.target].sort_values("weight", ascending=False).head(max_members)
        for m in mem.itertuples():
            r = ex.rollouts.loc[m.row]
            rows.append({"target": t.target, "role": "rollout", "weight": round(m.weight, 3), "step": int(r["step"]),
                         "reward": round(float(r["reward"]), 3), "prompt": r["prompt"], "completion": r["completion"],
                         "set size / residual": ""})
    return pd.DataFrame(rows)


def rates_table(summary: dict[str, Any]) -> pd.DataFrame:
    """Toxicity rates (ground truth and judge) with Wilson intervals per model and split."""
    rows = []
    for m in MODELS:
        for s in SPLITS:
            x = summary[m][s]
            ci = lambda v: f"[{v[0]:.3f}, {v[1]:.3f}]" if v else "-"
            rows.append({"model": ARM_LABELS[m], "prompts": s, "n": x["n"], "toxicity rate": x["rate"],
                         "95% CI": ci(x["rate_ci95"]), "judge rate": x["judge_rate"], "judge 95% CI": ci(x["judge_ci95"]),
                         "perplexity (base)": x.get("perplexity"), "KL to expert": x.get("kl_to_expert")})
    return pd.DataFrame(rows)


def paired_table(paired: dict[str, Any]) -> pd.DataFrame:
    """The paired tests as a table: per comparison, the rate difference with its bootstrap interval, the
    discordant pairs, the exact McNemar p and the MDE (bootstrap; McNemar at the observed discordance)."""
    rows = []
    items = [(f"{ARM_LABELS[a]} - explanation sets (targets)", v) for a, v in paired["control_minus_method"].items()]
    items += [(f"{ARM_LABELS[a]} - before ({split})", v) for split, d in paired["after_minus_before"].items()
              for a, v in d.items()]
    for name, v in items:
        if not v:
            continue
        for scorer, x in v.items():
            ci = x["ci95"]
            rows.append({"comparison": name, "scorer": scorer, "difference": x["value"],
                         "95% CI (draws x prompts)": f"[{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "-",
                         "only a / only b": f"{x['only_a']} / {x['only_b']}", "pairs": x["n_pairs"],
                         "McNemar p": x["p_mcnemar"], "MDE": x["mde"], "MDE (McNemar)": x["mde_mcnemar"],
                         "per draw": ", ".join(f"{d:+.3f}" for d in x["per_draw"])})
    return pd.DataFrame(rows)


def plot_rates(summary: dict[str, Any], gt_name: str = "ground truth", judge_name: str = "judge"):
    """Before/after toxicity rates with Wilson 95% intervals: the method and both controls, on the
    targets' prompts and on the other held-out prompts, by the ground truth and by the judge."""
    from matplotlib.patches import Patch

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.0))
    x = np.arange(len(MODELS))
    colors = {"expert": "0.55", "method": "C3", "random": "C0", "matched": "C1", "nearest": "C2"}
    for ax, split in zip(axes, SPLITS):
        for key, ci_key, off, alpha in (("rate", "rate_ci95", -0.2, 1.0), ("judge_rate", "judge_ci95", 0.2, 0.4)):
            vals = [summary[m][split][key] or 0.0 for m in MODELS]
            cis = [summary[m][split][ci_key] or [v, v] for m, v in zip(MODELS, vals)]
            err = [[max(0.0, v - c[0]) for v, c in zip(vals, cis)], [max(0.0, c[1] - v) for v, c in zip(vals, cis)]]
            ax.bar(x + off, vals, width=0.38, color=[colors[m] for m in MODELS], alpha=alpha, yerr=err, capsize=3,
                   edgecolor="k", linewidth=0.5)
        ax.set(xticks=x, xticklabels=[ARM_LABELS[m].replace(" ", "\n", 1) for m in MODELS],
               title=f"{'the targets' if split == 'target' else 'other held-out'} prompts "
                     f"(n = {summary['expert'][split]['n']} completions per evaluated model)", ylabel="toxicity rate")
        ax.legend(handles=[Patch(facecolor="0.4", edgecolor="k", label=gt_name),
                           Patch(facecolor="0.4", alpha=0.4, edgecolor="k", label=f"{judge_name} (judge)")],
                  fontsize=8, loc="best")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- the CLI's explanation


def expert_training_set(cfg) -> TrainingSet:
    """The finished expert's explanation pool (``[audit] pool``) as scored completions, for
    ``python -m fairl_lib audit explain`` without ``--train``: each rollout's prompt, completion,
    ground-truth reward, training step and RLOO advantage; ``index`` is its row in :func:`training_data`.
    Nothing is trained: the expert stage must exist.

    Raises:
        expert.NoRollouts: no finished expert stage for this profile and seed, or one without rollouts.
    """
    folder = expert_folder(cfg)
    ro = training_data(cfg, folder)
    rows = np.flatnonzero(ro["in_pool"].to_numpy())
    examples = [{"prompt": str(r.prompt), "completion": str(r.completion), "reward": float(r.reward),
                 "step": int(r.step), "advantage": float(r.advantage)} for r in ro.iloc[rows].itertuples()]
    return TrainingSet("scored", examples, rows.tolist(), None, f"the expert's training rollouts in {folder}")
