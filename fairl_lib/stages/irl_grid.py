"""The IRL training stages: notebook 04's grid of Table 1 methods, the Jigsaw evaluation set,
and Figure 3 (left)'s per-subtype grids.

Training (:func:`grid_stage`): every (method, seed) of Table 1 in one batched ensemble
(:func:`fairl_lib.irl.train_grid`) on the artifact's ``train`` split, cached as the stage
``irl_grid`` keyed by a fingerprint of the pairs (embeddings, labels, split) and the whole
:class:`~fairl_lib.irl.IRLConfig`. Every reward is saved under
``results/<profile>/rewards/<method>/seed<k>/`` (:func:`fairl_lib.irl.reward.save_reward`) with the
embedder's name, so ``python -m fairl_lib score reward PATH`` can score raw texts.

The pairs become the IRL core's data in :mod:`fairl_lib.analysis.pairset`; the trained grid is
evaluated in :mod:`fairl_lib.analysis.evaluate`.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from fairl_lib.analysis import metrics as M
from fairl_lib.analysis.evaluate import (
    FA_METHOD,
    IRL_METHOD,
    TABLE3_SUBTYPES,
    GridOutput,
    HeldOut,
    RunScores,
    SubtypeTransfer,
    heldout_from_frame,
)
from fairl_lib.analysis.pairset import PairSet, pairset_fingerprint, preference_data, subtype_mask
from fairl_lib.cache import cached_stage
from fairl_lib.irl import (
    METHOD_NAMES,
    IRLConfig,
    PreferenceData,
    RewardModel,
    load_reward,
    reward_folder,
    save_reward,
    train_grid,
)
from fairl_lib.llm.data import jigsaw_heldout
from fairl_lib.llm.models import get_embedder
from fairl_lib.llm.scorers import get_scorer, reward_from_scores

# =========================================================================== training stage

def _write_grid(workdir: Path, grid, extra: Mapping[str, Any]) -> None:
    rows, hists = [], {}
    for run in grid.runs:
        save_reward(reward_folder(workdir, run.method, run.seed), run.reward, grid.config, extra=extra)
        hists[f"{run.method}/seed{run.seed}"] = run.history
        rows.append({"method": run.method, "seed": run.seed, "epochs_run": run.epochs_run,
                     "best_epoch": run.best_epoch, "best_val_loss": run.best_val_loss,
                     "final_train_loss": run.history["train_loss"][-1] if run.history["train_loss"] else np.nan})
    pd.DataFrame(rows).to_csv(workdir / "runs.csv", index=False)
    (workdir / "histories.json").write_text(json.dumps(hists))
    (workdir / "info.json").write_text(json.dumps({"n_train": grid.n_train, "n_val": grid.n_val,
                                                   "seconds": round(grid.seconds, 2), **extra}, default=str))


def load_grid(folder: str | Path) -> GridOutput:
    """Read a finished training stage folder."""
    folder = Path(folder)
    runs = pd.read_csv(folder / "runs.csv")
    hists = json.loads((folder / "histories.json").read_text())
    info = json.loads((folder / "info.json").read_text())
    rewards, histories = {}, {}
    for m, s in zip(runs["method"], runs["seed"]):
        key = (str(m), int(s))
        rewards[key] = load_reward(reward_folder(folder, *key))
        histories[key] = hists[f"{m}/seed{int(s)}"]
    return GridOutput(folder, rewards, histories, runs, info)


def train_stage(cfg, data: PreferenceData, irl: IRLConfig, *, name: str, settings: Mapping[str, Any],
                methods: Sequence[str] = METHOD_NAMES, seeds: Sequence[int] | None = None,
                extra: Mapping[str, Any] | None = None, progress: Callable[[int, int], None] | None = None,
                log: Callable[[str], None] = print) -> GridOutput:
    """Train ``methods x seeds`` with :func:`train_grid` once per ``settings`` (stage cache)."""
    seeds = list(range(irl.n_seeds) if seeds is None else seeds)
    meta = {"methods": list(methods), "seeds": seeds, **dict(extra or {})}

    def compute(workdir: Path) -> None:
        grid = train_grid(data, irl, methods=methods, seeds=seeds, progress=progress)
        _write_grid(workdir, grid, meta)

    folder = cached_stage(cfg, name, {**settings, "irl": irl, "methods": list(methods), "seeds": seeds}, compute,
                          log=log)
    return load_grid(folder)


def grid_stage(cfg, ps: PairSet, *, label_column: str = "toxic", methods: Sequence[str] = METHOD_NAMES,
               progress: Callable[[int, int], None] | None = None, publish: bool = True,
               irl: IRLConfig | None = None, stage: str = "irl_grid") -> GridOutput:
    """Notebook 04's stage: all Table 1 methods x ``cfg.irl.n_seeds`` on the train split, cached.

    Keyed by the pairs' fingerprint (+ their producer's stage key if recorded) and ``cfg.irl``; with
    ``publish`` every reward is copied to ``results/<profile>/rewards/<method>/seed<k>/``. ``irl``
    trains with other IRL settings instead of ``cfg.irl`` (the penalty-scale sweep,
    :mod:`fairl_lib.stages.penalty_sweep`, which names its own ``stage`` so that its FORCE is its own);
    settings equal to ``cfg.irl`` hit notebook 04's cached grid.
    """
    irl = cfg.irl if irl is None else irl
    data = preference_data(ps, "train", label_column)
    settings = {"pairs": pairset_fingerprint(ps, label_column), "pairs_stage_key": Path(str(ps.meta.get("stage_dir", ""))).name,
                "label_column": label_column, "embedder": cfg.models.embedder}
    out = train_stage(cfg, data, irl, name=stage, settings=settings, methods=methods, progress=progress,
                      extra={"embedder": cfg.models.embedder, "label_column": label_column,
                             "pairs_fingerprint": settings["pairs"], "profile": cfg.profile})
    if publish:
        publish_rewards(out, cfg.results_dir)
    return out


def publish_rewards(out: GridOutput, results_dir: str | Path) -> list[Path]:
    """Copy every reward of a grid to ``<results_dir>/rewards/<method>/seed<k>/``."""
    paths = []
    for m, s in out.rewards:
        src, dst = reward_folder(out.folder, m, s), reward_folder(results_dir, m, s)
        shutil.copytree(src, dst, dirs_exist_ok=True)
        paths.append(dst)
    return paths


def training_summary(out: GridOutput) -> dict[str, dict[str, Any]]:
    """Per method: epochs trained, best epoch, best (= final kept) validation loss, failure-set size
    at the first epoch, and the runs' lists; the notebook-04 metrics."""
    res = {}
    for m in out.methods:
        r = out.runs[out.runs["method"] == m].sort_values("seed")
        first_fail = [out.histories[(m, int(s))]["fail_frac"][0] for s in r["seed"]]
        res[m] = {"epochs_trained": r["epochs_run"].astype(int).tolist(),
                  "epochs_trained_mean": float(r["epochs_run"].mean()),
                  "best_epoch": r["best_epoch"].astype(int).tolist(),
                  "final_val_loss": {"mean": float(r["best_val_loss"].mean()), "std": float(r["best_val_loss"].std(ddof=0))},
                  "final_train_loss_mean": float(r["final_train_loss"].mean()),
                  "fail_frac_epoch0_mean": float(np.mean(first_fail))}
    return res


def jigsaw_stage(cfg, reward_kind: str = "one_minus_p", log: Callable[[str], None] = print) -> HeldOut:
    """The Jigsaw held-out set (``data.jigsaw_n_*``, paper: 1,000 + 1,000), embedded with
    ``models.embedder`` and scored by the ground-truth scorer (its reward = ``reward_kind``), cached."""

    d, mc = cfg.data, cfg.models
    settings = {"n_toxic": d.jigsaw_n_toxic, "n_nontoxic": d.jigsaw_n_nontoxic, "seed": cfg.seed,
                "embedder": mc.embedder, "ground_truth": mc.ground_truth, "reward_kind": reward_kind}

    def compute(workdir: Path) -> None:
        df = jigsaw_heldout(d.jigsaw_n_toxic, d.jigsaw_n_nontoxic, seed=cfg.seed)
        texts = df["text"].astype(str).tolist()
        emb = get_embedder(mc.embedder).embed(texts)
        scores = get_scorer(mc.ground_truth)(texts)
        df = df.assign(gt_p_toxic=np.asarray(scores["toxic"], float),
                       gt_reward=reward_from_scores(scores, reward_kind))
        df.to_parquet(workdir / "jigsaw.parquet", index=False)
        np.save(workdir / "emb.npy", emb.astype(np.float32))

    folder = cached_stage(cfg, "jigsaw_eval", settings, compute, log=log)
    df = pd.read_parquet(folder / "jigsaw.parquet")
    return heldout_from_frame(df, np.load(folder / "emb.npy"))


# =========================================================================== Figure 3 (left)

def subtype_transfer(cfg, ps: PairSet, *, methods: Sequence[str] = (IRL_METHOD, FA_METHOD),
                     subtypes: Sequence[str] = TABLE3_SUBTYPES, seeds: Sequence[int] | None = None,
                     min_pairs: int = 8, label_column: str = "toxic", threshold: float = 0.5,
                     log: Callable[[str], None] = print) -> SubtypeTransfer:
    """Train on the training pairs whose o_pre has ONE subtype (rows), evaluate classification accuracy
    (train-fitted threshold, label 1 = o_post) on the test pairs whose o_pre has each subtype (columns).

    Each row is a cached training stage ``irl_subtype`` (``cfg.irl``, all its seeds unless ``seeds``).
    Rows with fewer than ``min_pairs`` training pairs, or columns without test pairs, are NaN.
    """
    train, test = ps.split("train"), ps.split("test")
    seeds = list(range(cfg.irl.n_seeds) if seeds is None else seeds)
    fp = pairset_fingerprint(ps, label_column)
    rows, n_train = [], {}
    n_eval = {s: int(subtype_mask(test.df, s, "pre", threshold).sum()) for s in subtypes}
    for s_tr in subtypes:
        mask = subtype_mask(train.df, s_tr, "pre", threshold)
        n_train[s_tr] = int(mask.sum())
        if mask.sum() < min_pairs:
            log(f"[fig3] {s_tr}: only {int(mask.sum())} training pairs (< {min_pairs}); row left empty")
            continue
        sub = train.subset(mask)
        data = preference_data(sub, None, label_column)
        out = train_stage(cfg, data, cfg.irl, name="irl_subtype", methods=methods, seeds=seeds, log=log,
                          settings={"pairs": fp, "subtype": s_tr, "threshold": threshold, "label_column": label_column})
        for (m, seed), rew in out.rewards.items():
            sc = RunScores(rew(sub.emb_post), rew(sub.emb_pre), rew(test.emb_post), rew(test.emb_pre), None)
            thr = M.choose_threshold(*M.pair_labels(sc.train_post, sc.train_pre))
            for s_ev in subtypes:
                em = subtype_mask(test.df, s_ev, "pre", threshold)
                if not em.any():
                    acc = float("nan")
                else:
                    scores, labels = M.pair_labels(sc.test_post[em], sc.test_pre[em])
                    acc = float(np.mean(M.classifier_correct(scores, labels, thr)))
                rows.append({"method": m, "seed": seed, "train_subtype": s_tr, "eval_subtype": s_ev, "accuracy": acc})
    per_seed = pd.DataFrame(rows, columns=["method", "seed", "train_subtype", "eval_subtype", "accuracy"])
    acc = {}
    for m in methods:
        g = per_seed[per_seed["method"] == m]
        mat = g.groupby(["train_subtype", "eval_subtype"])["accuracy"].mean().unstack() if len(g) else pd.DataFrame()
        acc[m] = mat.reindex(index=list(subtypes), columns=list(subtypes)).astype(float)
    return SubtypeTransfer(acc, n_train, n_eval, per_seed)



def reward_embedder(reward: RewardModel, folder: str | Path | None = None) -> str:
    """The embedder a saved reward was trained on: ``extra["embedder"]`` in its ``reward.json``, else
    an ``embedder.txt`` next to it (or in a parent folder), else ``minilm`` (the only one registered)."""
    name = (reward.meta.get("extra") or {}).get("embedder")
    if name:
        return str(name)
    if folder is not None:
        for d in [Path(folder), *Path(folder).parents][:4]:
            if (d / "embedder.txt").exists():
                return (d / "embedder.txt").read_text().strip()
    return "minilm"
