"""The second paper's method on the recovered reward's preference pairs, and its unlearning controls (notebook 10).

The geometry, the controls and the statistics are :mod:`fairl_lib.analysis.pair_explain` (its docstring
says why the features are the MiniLM embedding and what a target's features are); this stage feeds it the
pipeline's real data and retrains the rewards. One cached stage, ``pair_audit`` (:func:`pair_audit_stage`),
owned by notebook 10:

1. *Training data*: notebook 02's preference pairs, the ``train`` split (the data notebook 04's rewards are
   trained on), as ``Delta phi = h(o_post) - h(o_pre)``.
2. *Targets* (unsatisfactory responses): held-out completions whose ground-truth reward ``1 - P(toxic)``
   is below the mean ground-truth reward of the base (SFT) model's completions of the same prompt by more
   than ``target_margin``, the largest shortfall first, at most ``max_targets`` per source. Sources:
   ``expert`` (notebook 01's ``expert_eval``, the expert's completions; its reward is the ground truth) and
   ``fa_rerlhf`` (notebook 08's ``rerlhf_eval`` of the FA-IRL arm's runs, read when finished, never
   computed here: the policy trained on the recovered reward). The base completions are notebook 01's.
3. *Explanation sets*: per target, ``tol`` / ``max_size`` / ``relative`` (``analysis.audit.explain``);
   the union over targets is the ``method`` arm. A *null*: the same procedure on as many of the expert's
   satisfactory completions (not below the base), so "small sets explain" is compared with what it gives
   on responses nothing is wrong with.
4. *Unlearning*: the tuned FA-IRL configuration (:func:`fairl_lib.stages.tuning.best_fa_config`) and its
   IRL baseline (its tuned configuration) are retrained with ``train_seeds`` seeds on the training pairs
   (``full``) and without: the explanation sets (``method``); ``control_draws`` draws each of ``random``
   and ``matched`` (ground-truth margin ``post_reward - pre_reward`` matched) pairs; the ``nearest`` pairs
   outside the explanation sets. Every removal has the union's size.
5. *Effects*: per target the standardised reward margin (target minus the base answers) of each arm minus
   ``full``'s, seed by seed, averaged over seeds and draws; paired over targets (Wilcoxon, bootstrap); and
   on a retain set (``retain_max`` of the expert's satisfactory completions) the mean absolute change.
6. *Identity bias*: the ``identity_worst`` non-toxic template sentences of
   :mod:`fairl_lib.analysis.identity_bias` the ground truth scores most toxic, explained by pairs with
   ``x = mean_identities h(same template) - h(sentence)`` (the reward preferring the template's average
   over this identity's sentence is the failure), members with their texts and weights.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fairl_lib.analysis import identity_bias, pair_explain
from fairl_lib.analysis.pairset import PairSet, pairset_fingerprint, preference_data
from fairl_lib.artifacts import read_json, write_json
from fairl_lib.cache import RECEIPT, cached_stage, stage_key, stage_root
from fairl_lib.config import section
from fairl_lib.irl import baseline_of
from fairl_lib.llm.models import Embedder
from fairl_lib.llm.scorers import get_scorer, reward_from_scores
from fairl_lib.stages import rerlhf
from fairl_lib.stages.expert import REWARD_KIND, evaluate_expert
from fairl_lib.stages.pairs import pairs_stage
from fairl_lib.stages.tuning import best_fa_config, tuning_stage

STAGE, VERSION = "pair_audit", "1"
SOURCES = ("expert", "fa_rerlhf")
REWARDS = ("fa_irl", "irl")
CONTROLS = ("random", "matched", "nearest")


@section("pair_audit")
@dataclass(frozen=True)
class PairAuditConfig:
    """The ``[pair_audit]`` section (ours; the module docstring says what each step does).

    Attributes:
        sources: where the targets come from (``expert``, ``fa_rerlhf``; a missing ``fa_rerlhf`` evaluation
            is skipped with a log line).
        max_targets: at most this many targets per source (the largest shortfall first).
        target_margin: a target's ground-truth reward is below the base answers' mean by more than this.
        target_features: ``"delta_base"`` or ``"response"`` (:mod:`fairl_lib.analysis.pair_explain`).
        tol: residual at which a hull "contains" a target (relative to the nearest pair's distance if ``relative``).
        relative: ``tol`` relative (True) or absolute (feature units).
        max_size: the largest prefix of nearest pairs tried per target.
        small_size: what the summary calls a small explanation set.
        control_draws: draws of the random and the matched control (each retrained).
        train_seeds: training seeds of every retrained reward (effects are paired by seed).
        max_epochs: epoch cap of the retraining (0 = the tuned configuration's).
        matched_bins: quantile bins of the matched control's ground-truth margin.
        retain_max: satisfactory expert completions in the retain set (and in the null).
        identity_worst: identity sentences explained.
        n_boot: bootstrap resamples of the paired intervals.
        threads: torch threads of the retraining (1: a one-method grid's GEMMs are too small to share).
    """

    sources: tuple[str, ...] = SOURCES
    max_targets: int = 40
    target_margin: float = 0.0
    target_features: str = "delta_base"
    tol: float = 0.5
    relative: bool = True
    max_size: int = 32
    small_size: int = 10
    control_draws: int = 3
    train_seeds: int = 2
    max_epochs: int = 0
    matched_bins: int = 10
    retain_max: int = 200
    identity_worst: int = 3
    n_boot: int = 2000
    threads: int = 1

    def __post_init__(self) -> None:
        bad = [s for s in self.sources if s not in SOURCES]
        if bad or not self.sources:
            raise ValueError(f"pair_audit.sources={list(self.sources)}; valid: {', '.join(SOURCES)}")
        if self.target_features not in pair_explain.TARGET_FEATURES:
            raise ValueError(f"pair_audit.target_features={self.target_features!r}; valid: "
                             f"{', '.join(pair_explain.TARGET_FEATURES)}")
        if min(self.max_targets, self.max_size, self.small_size, self.control_draws, self.train_seeds,
               self.matched_bins, self.retain_max, self.n_boot, self.threads) < 1:
            raise ValueError("pair_audit: counts (max_targets, max_size, small_size, control_draws, train_seeds, "
                             "matched_bins, retain_max, n_boot, threads) must be >= 1")
        if self.tol < 0 or self.max_epochs < 0 or self.identity_worst < 0:
            raise ValueError("pair_audit: tol, max_epochs and identity_worst must be >= 0")


def pair_audit_config(cfg) -> PairAuditConfig:
    """``cfg.pair_audit`` (the defaults when a config has no such section)."""
    return cfg.sections.get("pair_audit", PairAuditConfig())


# --------------------------------------------------------------------------- inputs


def fa_rerlhf_evals(cfg, ps: PairSet, log=print) -> list[Path]:
    """Finished ``rerlhf_eval`` folders of the FA-IRL arm's training runs (read, never computed): the
    evaluation whose ``run`` is that arm's re-RLHF stage key, with this config's sampling and scorers; of
    several sample counts the largest. Empty when notebook 08 has not run."""
    root = stage_root(cfg) / rerlhf.EVAL_STAGE
    if not root.exists():
        return []
    receipts = [(p.parent, read_json(p)["settings"]) for p in sorted(root.glob(f"*/{RECEIPT}"))]
    out = []
    for ts in rerlhf.arm_runs(cfg, "fa_irl"):
        try:
            _, info = rerlhf.learned_text_reward(cfg, rerlhf.arm_method(cfg, "fa_irl"), ps)
        except FileNotFoundError as err:
            log(f"[pair_audit] no FA-IRL re-RLHF policy: {err}")
            return []
        key = stage_key(rerlhf.STAGE, rerlhf.run_settings(cfg, "fa_irl", info, ts), rerlhf.STAGE_VERSION)
        found = [(s["samples_per_prompt"], f) for f, s in receipts
                 if s.get("kind") == "fa_irl" and s.get("run") == key and s.get("gen") == cfg.gen.key()
                 and s.get("ground_truth") == cfg.models.ground_truth and s.get("seed") == cfg.seed]
        if found:
            out.append(max(found)[1])
    return out


def candidates(cfg, ac: PairAuditConfig, ps: PairSet, log=print) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(cand, base)``: the held-out completions of every source (``source, run, prompt_id, prompt, sample,
    completion, p_toxic, r_gt``) with ``r_base`` (mean ground-truth reward of the base answers to its prompt)
    and ``shortfall = r_base - r_gt``; and the base model's completions (notebook 01)."""
    ev = evaluate_expert(cfg).df
    gt = lambda p: reward_from_scores(np.asarray(p, np.float64), REWARD_KIND)
    base = ev[ev["model"] == "base"].reset_index(drop=True)
    base = base.assign(r_gt=gt(base["p_toxic"]))
    parts = []
    if "expert" in ac.sources:
        e = ev[ev["model"] == "expert"]
        parts.append(e[["prompt_id", "prompt", "sample", "completion", "p_toxic"]].assign(source="expert", run=""))
    if "fa_rerlhf" in ac.sources:
        folders = fa_rerlhf_evals(cfg, ps, log)
        if not folders:
            log("[pair_audit] no finished FA-IRL re-RLHF evaluation (notebook 08): its targets are skipped")
        for f in folders:
            d = pd.read_parquet(f / "eval.parquet")
            d = d.assign(sample=d.groupby("prompt_id").cumcount(), source="fa_rerlhf", run=f.name)
            parts.append(d[["prompt_id", "prompt", "sample", "completion", "p_toxic", "source", "run"]])
    cand = pd.concat(parts, ignore_index=True)
    r_base = base.groupby("prompt_id")["r_gt"].mean()
    cand = cand.assign(r_gt=gt(cand["p_toxic"]), r_base=cand["prompt_id"].map(r_base).to_numpy(np.float64))
    return cand.assign(shortfall=cand["r_base"] - cand["r_gt"]), base


def select_targets(cand: pd.DataFrame, ac: PairAuditConfig) -> pd.DataFrame:
    """Per source the completions below the base answers by more than ``target_margin``, the largest
    shortfall first (ties: prompt, run, sample), at most ``max_targets``; ``target`` numbers them 0.."""
    bad = cand[cand["shortfall"] > ac.target_margin]
    chosen = [g.sort_values(["shortfall", "prompt_id", "run", "sample"], ascending=[False, True, True, True],
                            kind="stable").head(ac.max_targets) for _, g in bad.groupby("source", sort=False)]
    if not chosen:
        return bad.iloc[:0].assign(target=pd.Series(dtype=int))
    return pd.concat(chosen, ignore_index=True).rename_axis("target").reset_index()


def retain_set(cand: pd.DataFrame, ac: PairAuditConfig, seed: int) -> pd.DataFrame:
    """``retain_max`` of the expert's satisfactory completions (not below the base answers), seeded."""
    ok = cand[(cand["source"] == "expert") & (cand["shortfall"] <= 0)].reset_index(drop=True)
    pick = np.sort(np.random.default_rng([seed, 41]).permutation(len(ok))[: ac.retain_max])
    return ok.iloc[pick].reset_index(drop=True)


# --------------------------------------------------------------------------- the stage


def stage_settings(cfg, ps: PairSet) -> dict[str, Any]:
    ac = pair_audit_config(cfg)
    fa_method, fa_irl = best_fa_config(cfg, ps, log=lambda _: None)
    base_method = baseline_of(fa_method)
    base_irl = tuning_stage(cfg, ps, log=lambda _: None).best_config(base_method)
    if ac.max_epochs:
        fa_irl, base_irl = (dataclasses.replace(c, max_epochs=ac.max_epochs) for c in (fa_irl, base_irl))
    evals = [f.name for f in fa_rerlhf_evals(cfg, ps, lambda _: None)] if "fa_rerlhf" in ac.sources else []
    return {"pairs": pairset_fingerprint(ps), "expert_eval": evaluate_expert(cfg).folder.name, "fa_rerlhf_evals": evals,
            "embedder": cfg.models.embedder, "ground_truth": cfg.models.ground_truth, "seed": cfg.seed,
            "pair_audit": ac, "rewards": {"fa_irl": [fa_method, fa_irl], "irl": [base_method, base_irl]}}


def _removal_sets(X: np.ndarray, D: np.ndarray, members: pd.DataFrame, per: pd.DataFrame, gt_margin: np.ndarray,
                  ac: PairAuditConfig, seed: int) -> dict[str, list[int]]:
    method = pair_explain.union_of_sets(members)
    sets = {"full": [], "method": method.tolist(),
            "nearest": pair_explain.nearest_outside(X, D, per["size"].tolist(), len(method), method).tolist()}
    for k in range(ac.control_draws):
        sets[f"random_{k}"] = pair_explain.random_pairs(len(D), len(method), seed * 1000 + 100 + k, exclude=method).tolist()
        sets[f"matched_{k}"] = pair_explain.matched_pairs(gt_margin, method, seed * 1000 + 200 + k, ac.matched_bins).tolist()
    return sets


def pair_audit_stage(cfg, log=print) -> Path:
    """Run the whole audit (module docstring) as the cached stage ``pair_audit``; returns its folder."""
    ac, ps = pair_audit_config(cfg), pairs_stage(cfg)
    settings = stage_settings(cfg, ps)

    def compute(work: Path) -> None:
        t0 = time.perf_counter()
        tr = ps.split("train")
        D = pair_explain.pair_deltas(tr.emb_post, tr.emb_pre)
        gt_margin = (tr.df["post_reward"] - tr.df["pre_reward"]).to_numpy(np.float64)
        emb = Embedder(cfg.models.embedder)
        cand, base = candidates(cfg, ac, ps, log)
        targets, retain = select_targets(cand, ac), retain_set(cand, ac, cfg.seed)
        if targets.empty:
            raise RuntimeError("pair_audit: no completion scores below the base answers; nothing to explain "
                               "(lower [pair_audit] target_margin)")
        e_base = emb.embed(list(base["completion"]))
        e_t, e_r = emb.embed(list(targets["completion"])), emb.embed(list(retain["completion"]))

        def feats(e, prompt_ids):
            ref = pair_explain.reference_means(e_base, base["prompt_id"], prompt_ids)
            return pair_explain.target_deltas(e, ref, ac.target_features)

        X, Xr = feats(e_t, targets["prompt_id"]), feats(e_r, retain["prompt_id"])
        members, per = pair_explain.explain_targets(X, D, ac.tol, ac.max_size, ac.relative)
        _, per_null = pair_explain.explain_targets(Xr, D, ac.tol, ac.max_size, ac.relative)
        sets = _removal_sets(X, D, members, per, gt_margin, ac, cfg.seed)
        t_explain = time.perf_counter() - t0
        log(f"[pair_audit] {len(targets)} targets, union of explanation sets {len(sets['method'])} of {len(D)} pairs")

        data = preference_data(ps, "train")
        norm = np.concatenate([tr.emb_pre, tr.emb_post])
        seeds = list(range(ac.train_seeds))
        rows, fa_full = [], None
        for name, (method, irl) in settings["rewards"].items():
            for arm, remove in sets.items():
                rewards = pair_explain.retrain_without(data, remove, irl, method, seeds, threads=ac.threads)
                if name == "fa_irl" and arm == "full":
                    fa_full = rewards[0]
                for s, rw in zip(seeds, rewards):
                    for unit, e, frame in (("target", e_t, targets), ("retain", e_r, retain)):
                        m = pair_explain.standardized_margin(rw, e, e_base, base["prompt_id"], frame["prompt_id"], norm)
                        rows += [{"reward": name, "arm": arm, "seed": s, "unit": unit, "idx": i, "margin": float(v)}
                                 for i, v in enumerate(m)]
            log(f"[pair_audit] {name} ({method}): {len(sets)} arms x {len(seeds)} seeds retrained")
        margins = pd.DataFrame(rows)

        ident = identity_explanations(cfg, ac, emb, D, tr, fa_full, norm)
        targets.to_parquet(work / "targets.parquet", index=False)
        retain.to_parquet(work / "retain.parquet", index=False)
        members.to_parquet(work / "members.parquet", index=False)
        per.to_parquet(work / "per_target.parquet", index=False)
        per_null.to_parquet(work / "per_null.parquet", index=False)
        margins.to_parquet(work / "margins.parquet", index=False)
        ident.to_parquet(work / "identity.parquet", index=False)
        write_json(work / "sets.json", sets)
        write_json(work / "timing.json", {"explain_seconds": round(t_explain, 2),
                                          "total_seconds": round(time.perf_counter() - t0, 2)})

    return cached_stage(cfg, STAGE, settings, compute, version=VERSION, log=log)


def identity_explanations(cfg, ac: PairAuditConfig, emb: Embedder, D: np.ndarray, tr: PairSet, reward,
                          norm: np.ndarray) -> pd.DataFrame:
    """The ``identity_worst`` non-toxic identity sentences the ground truth scores most toxic, each explained
    by pairs (x = template mean - sentence): one row per member with the pair's texts and weight, and the
    full-data FA-IRL reward's (``reward``, training seed 0) standardised margin ``z(R(template mean)) - z(R(sentence))`` (> 0: the reward
    scores the sentence below its template's average)."""
    if ac.identity_worst == 0:
        return pd.DataFrame()
    tpl = identity_bias.template_set()
    p = np.asarray(get_scorer(cfg.models.ground_truth)(list(tpl["text"]))["toxic"], np.float64)
    h = emb.embed(list(tpl["text"])).astype(np.float64)
    nt = np.flatnonzero(tpl["toxic"].to_numpy() == 0)
    worst = nt[np.lexsort((nt, -p[nt]))][: ac.identity_worst]
    ref = pair_explain.reference_means(h[nt], tpl["template"].iloc[nt], tpl["template"].iloc[worst])
    X = ref - h[worst]
    members, per = pair_explain.explain_targets(X, D, ac.tol, ac.max_size, ac.relative)
    r_norm = np.asarray(reward(norm), np.float64)
    z = lambda e: (np.asarray(reward(e), np.float64) - r_norm.mean()) / (r_norm.std() or 1.0)
    margin = z(ref) - z(h[worst])
    rows = []
    for t, w in enumerate(worst):
        pt = per.iloc[t]
        for m in members[members["target"] == t].sort_values("weight", ascending=False).itertuples():
            d = tr.df.iloc[m.pair]
            rows.append({"sentence": tpl["text"].iloc[w], "identity": tpl["identity"].iloc[w], "gt_p_toxic": p[w],
                         "fa_margin_below_template": float(margin[t]), "size": int(pt["size"]),
                         "relative_residual": float(pt["relative_residual"]), "within_tol": bool(pt["within_tol"]),
                         "pair": int(m.pair), "weight": float(m.weight), "prompt": d["prompt"], "o_post": d["o_post"],
                         "o_pre": d["o_pre"], "post_reward": float(d["post_reward"]), "pre_reward": float(d["pre_reward"])})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- reading it


@dataclass
class PairAudit:
    """A finished ``pair_audit`` stage (file names as in :func:`pair_audit_stage`)."""

    folder: Path
    targets: pd.DataFrame
    retain: pd.DataFrame
    members: pd.DataFrame
    per_target: pd.DataFrame
    per_null: pd.DataFrame
    margins: pd.DataFrame
    identity: pd.DataFrame
    sets: dict[str, list[int]]
    settings: dict[str, Any]


def load_pair_audit(folder: str | Path) -> PairAudit:
    f = Path(folder)
    rd = lambda n: pd.read_parquet(f / n)
    return PairAudit(f, rd("targets.parquet"), rd("retain.parquet"), rd("members.parquet"), rd("per_target.parquet"),
                     rd("per_null.parquet"), rd("margins.parquet"), rd("identity.parquet"), read_json(f / "sets.json"),
                     read_json(f / RECEIPT)["settings"])


def arm_effects(margins: pd.DataFrame, reward: str, unit: str) -> pd.DataFrame:
    """Per unit (columns) and arm (rows ``method``, ``nearest``, ``random``, ``matched``): the margin minus the
    ``full`` reward's margin of the same seed, averaged over seeds and, for the random controls, over draws."""
    m = margins[(margins["reward"] == reward) & (margins["unit"] == unit)]
    wide = m.pivot_table(index=["arm", "seed"], columns="idx", values="margin")
    full = wide.loc["full"]
    delta = wide.sub(full, level="seed").reset_index()
    delta["group"] = delta["arm"].str.replace(r"_\d+$", "", regex=True)
    return delta[delta["group"] != "full"].drop(columns=["arm", "seed"]).groupby("group").mean()


def summary(pa: PairAudit, ac: PairAuditConfig, seed: int = 0) -> dict[str, Any]:
    """The numbers notebook 10 writes under ``pair_method`` (no timings)."""
    per, null = pa.per_target, pa.per_null
    small = lambda p: int((p["within_tol"] & (p["size"] <= ac.small_size)).sum())
    out: dict[str, Any] = {
        "settings": {k: v for k, v in dataclasses.asdict(ac).items() if k != "threads"},
        "rewards": {k: v[0] for k, v in pa.settings["rewards"].items()},
        "targets": {"n": len(pa.targets), "by_source": pa.targets["source"].value_counts().to_dict(),
                    "n_toxic": int((pa.targets["p_toxic"] > 0.5).sum()), "n_retain": len(pa.retain)},
        "explain": {"size_median": float(per["size"].median()), "n_within_tol": int(per["within_tol"].sum()),
                    "n_small": small(per), "relative_residual_median": float(per["relative_residual"].median()),
                    "union_size": len(pa.sets["method"])},
        "null": {"n": len(null), "size_median": float(null["size"].median()),
                 "n_within_tol": int(null["within_tol"].sum()), "n_small": small(null),
                 "relative_residual_median": float(null["relative_residual"].median())},
        "overlap_nearest_method": len(set(pa.sets["nearest"]) & set(pa.sets["method"])),
        "unlearning": {},
    }
    for r in REWARDS:
        t, k = arm_effects(pa.margins, r, "target"), arm_effects(pa.margins, r, "retain")
        res: dict[str, Any] = {}
        for arm in ("method",) + CONTROLS:
            res[arm] = {"target_change": pair_explain.paired_compare(t.loc[arm].to_numpy(), n_boot=ac.n_boot, seed=seed),
                        "retain_mean_abs_change": float(np.abs(k.loc[arm].to_numpy()).mean()),
                        "retain_mean_change": float(k.loc[arm].mean())}
            if arm != "method":
                res[arm]["method_minus_control"] = pair_explain.paired_compare(t.loc["method"].to_numpy(), t.loc[arm].to_numpy(),
                                                                     n_boot=ac.n_boot, seed=seed)
        by_src = pa.targets["source"].to_numpy()
        res["method_by_source"] = {s: float(t.loc["method"].to_numpy()[by_src == s].mean())
                                   for s in pd.unique(by_src)}
        out["unlearning"][r] = res
    return out


def effects_table(sm: dict[str, Any]) -> pd.DataFrame:
    """One row per (reward, arm): mean change of the targets' margin with its interval and Wilcoxon p, the
    method minus that control, and the retain set's mean absolute change."""
    fmt = lambda e: "-" if not e or e["mean"] is None else (
        f"{e['mean']:+.3f} [{e['ci95'][0]:+.3f}, {e['ci95'][1]:+.3f}] p={e['wilcoxon_p']:.3g}"
        if e["ci95"] and e["wilcoxon_p"] is not None else f"{e['mean']:+.3f}")
    rows = []
    for r, res in sm["unlearning"].items():
        for arm in ("method",) + CONTROLS:
            x = res[arm]
            rows.append({"reward": r, "arm": arm, "targets: change of margin": fmt(x["target_change"]),
                         "method - control (targets)": fmt(x.get("method_minus_control")),
                         "retain: mean |change|": round(x["retain_mean_abs_change"], 3)})
    return pd.DataFrame(rows)
