"""Prompt screening: keep the prompts on which the base model is often toxic (notebook 01's first stage).

Why (ours, an adaptation of the paper's own filter). The paper keeps RealToxicityPrompts prompts
above a Perspective score "to ensure a strong detoxification signal" and aligns *base* models
(Pythia), which continue toxic prompts toxically often enough that at least about 36% of its pairs
are T->NT (Figure 3 middle: 3,619 in each of train and test of 20,000 pairs per family). Our offline
base model is a safety-tuned chat model that is toxic on few prompts, so the prompt score alone gives
about a tenth of that. Screening measures the signal the paper's filter aims at, the base model's own
toxicity on the prompt, and keeps the prompts where it is high.

Design, two stages of sampling (a sequential screen; every number is in ``[data]``):

1. every candidate prompt (Perspective toxicity above ``screen_prompt_toxicity``, all of
   ``rtp_sources``, at most ``screen_max_candidates`` in hash order) gets ``screen_first_draws``
   base-model completions;
2. a prompt with at least ``screen_continue_min`` toxic completions gets ``screen_more_draws`` more;
3. a prompt is kept when its toxic count over all its draws reaches ``screen_min_toxic``.

A completion is toxic when the ground truth's P(toxic) exceeds ``models.toxic_threshold``; completions
are sampled with the ``[gen]`` settings (the pairs' own). The screening seed ``screen_seed`` is not the
run's seed and no later stage uses it, so the screen is part of the data (the same for seeds 0 and 1)
and every later draw is fresh. The draws that chose a prompt over-state its rate (regression to the
mean): rates are measured on fresh samples only (notebook 01's evaluation, notebook 02's pairs).

The base model screened is always the primary ``models.base_lm``; notebook 07's other sizes use the
same prompts. With ``screen = false`` nothing is sampled and the prompt-score filter alone applies.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fairl_lib.artifacts import read_json, write_json
from fairl_lib.cache import cached_stage
from fairl_lib.llm import data
from fairl_lib.llm.models import load_lm
from fairl_lib.llm.scorers import get_scorer
from fairl_lib.stages.generation import chunked_generate, model_source

SCREEN_STAGE, SCREEN_VERSION = "screen", "1"


def screen_settings(cfg) -> dict[str, Any]:
    """The ``screen`` stage key: candidates, draws, the screening seed, the model, sampler and scorer."""
    d, m = cfg.data, cfg.models
    return {"base_lm": m.base_lm, "source": model_source(cfg), "gen": cfg.gen.key(),
            "candidates": {"prompt_toxicity": d.screen_prompt_toxicity, "rtp_sources": list(d.rtp_sources),
                           "max_candidates": d.screen_max_candidates},
            "draws": [d.screen_first_draws, d.screen_continue_min, d.screen_more_draws],
            "seed": d.screen_seed, "ground_truth": m.ground_truth, "toxic_threshold": m.toxic_threshold}


def screen_key(cfg) -> dict[str, Any]:
    """What the screened prompt sets depend on, for the keys of the stages that use them: the screen's own key
    (its sampling) plus the pass rule and how RLHF uses the prompts (neither changes the sampling)."""
    d = cfg.data
    return {**screen_settings(cfg), "min_toxic": d.screen_min_toxic, "rlhf": d.screen_rlhf}


def screen_candidates(cfg) -> pd.DataFrame:
    """The prompts the screen samples: above ``screen_prompt_toxicity``, capped in the screen seed's hash order."""
    d = cfg.data
    df = data.filter_prompts(data.load_rtp(sources=d.rtp_sources), d.screen_prompt_toxicity)
    if df.empty:
        raise ValueError(f"No RealToxicityPrompts prompt has prompt_toxicity > {d.screen_prompt_toxicity}: "
                         "lower data.screen_prompt_toxicity or check the RealToxicityPrompts files.")
    if d.screen_max_candidates and len(df) > d.screen_max_candidates:
        keep = np.sort(data._hash_order(df["prompt"], d.screen_seed)[: d.screen_max_candidates])
        df = df.iloc[keep].reset_index(drop=True)
    return df


def continue_screening(n_toxic_first: np.ndarray, continue_min: int) -> np.ndarray:
    """Which prompts get the second round of draws: at least ``continue_min`` toxic in the first."""
    return np.asarray(n_toxic_first) >= continue_min


def keep_screened(n_toxic: np.ndarray, min_toxic: int) -> np.ndarray:
    """Which prompts pass the screen: at least ``min_toxic`` toxic draws over both rounds."""
    return np.asarray(n_toxic) >= min_toxic


def _toxic_counts(flags: np.ndarray, k: int) -> np.ndarray:
    """Per prompt, how many of its ``k`` consecutive draws are toxic."""
    return flags.reshape(-1, k).sum(axis=1) if k else np.zeros(len(flags), dtype=int)


def screen_stage(cfg) -> Path:
    """Sample and score the candidates (cached stage ``screen``); returns the finished folder.

    ``screen.parquet``: one row per candidate with ``prompt_id, prompt, prompt_toxicity, challenging,
    draws_first, toxic_first, draws_more, toxic_more, n_draws, n_toxic, kept``; ``screen.json``: counts.
    Generation is chunked in the ``.partial`` folder, so a killed screen resumes.
    """
    d = cfg.data
    settings = screen_settings(cfg)

    def compute(work: Path) -> None:
        cand = screen_candidates(cfg)
        base = load_lm(cfg.models.base_lm, source=model_source(cfg))
        gt, thr = get_scorer(cfg.models.ground_truth), cfg.models.toxic_threshold

        def draw(prompts: pd.Series, k: int, seed: int, tag: str) -> np.ndarray:
            texts = [p for p in prompts for _ in range(k)]
            if not texts:
                return np.zeros(0, dtype=bool)
            comp = chunked_generate(base, texts, cfg.gen, seed, work, tag, what="screen")
            return np.asarray(gt(comp)["toxic"], dtype=np.float64) > thr

        k1, k2 = d.screen_first_draws, d.screen_more_draws
        first = _toxic_counts(draw(cand["prompt"], k1, d.screen_seed * 2 + 1, "first"), k1)
        more_rows = continue_screening(first, d.screen_continue_min) if k2 else np.zeros(len(cand), bool)
        more = np.zeros(len(cand), dtype=int)
        more[more_rows] = _toxic_counts(draw(cand["prompt"][more_rows], k2, d.screen_seed * 2 + 2, "more"), k2)
        out = cand[["prompt_id", "prompt", "prompt_toxicity", "challenging"]].assign(
            draws_first=k1, toxic_first=first, draws_more=np.where(more_rows, k2, 0), toxic_more=more)
        out["n_draws"] = out["draws_first"] + out["draws_more"]
        out["n_toxic"] = out["toxic_first"] + out["toxic_more"]
        out["kept"] = keep_screened(out["n_toxic"].to_numpy(), d.screen_min_toxic)
        out.to_parquet(work / "screen.parquet", index=False)
        write_json(work / "screen.json", {
            "settings": settings, "n_candidates": len(out), "n_continued": int(more_rows.sum()),
            "n_kept": int(out["kept"].sum()), "n_draws": int(out["n_draws"].sum()),
            "screen_toxic_rate_all": float(out["n_toxic"].sum() / max(out["n_draws"].sum(), 1)),
            "screen_toxic_rate_kept": float(out.loc[out.kept, "n_toxic"].sum()
                                            / max(out.loc[out.kept, "n_draws"].sum(), 1))})
        for f in work.glob("gen_*.json"):
            f.unlink()

    return cached_stage(cfg, SCREEN_STAGE, settings, compute, version=SCREEN_VERSION)


def load_screen(cfg) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``(table, summary)`` of the screen (computed on first use). ``kept`` and the kept counts follow the
    profile's ``screen_min_toxic`` (the pass rule is not part of the sampling, so not of the stage key)."""
    folder = screen_stage(cfg)
    table, summary = pd.read_parquet(folder / "screen.parquet"), read_json(folder / "screen.json")
    table["kept"] = keep_screened(table["n_toxic"].to_numpy(), cfg.data.screen_min_toxic)
    kept = table[table["kept"]]
    summary.update(n_kept=int(len(kept)), screen_toxic_rate_kept=float(kept["n_toxic"].sum()
                                                                         / max(int(kept["n_draws"].sum()), 1)))
    return table, summary


def screened_prompts(cfg) -> pd.DataFrame:
    """The full RealToxicityPrompts rows of the prompts that pass the screen, in ``prompt_id`` order.

    Raises:
        ValueError: no prompt passes (names the settings to relax).
    """
    table, _ = load_screen(cfg)
    kept = set(table.loc[table["kept"], "prompt_id"])
    if not kept:
        raise ValueError(f"No prompt passed the screen ({len(table)} candidates): lower data.screen_min_toxic "
                         "or data.screen_prompt_toxicity, or add draws (data.screen_more_draws).")
    rows = data.load_rtp(sources=cfg.data.rtp_sources)
    return rows[rows["prompt_id"].isin(kept)].reset_index(drop=True)


def screen_summary(cfg) -> dict[str, Any]:
    """Notebook 01's account of the screen: counts, the screening draws' toxic rates overall and of the kept
    prompts (over-stated by selection: fresh samples measure the real rate), and the first round's rate by
    RealToxicityPrompts' ``challenging`` flag and by prompt score above / below 0.5 (the cheap levers).
    ``{"enabled": False}`` when the profile does not screen."""
    if not cfg.data.screen:
        return {"enabled": False}
    table, s = load_screen(cfg)
    rate = lambda g: float(g["toxic_first"].sum() / max(int(g["draws_first"].sum()), 1))
    return {"enabled": True, "n_candidates": s["n_candidates"], "n_continued": s["n_continued"],
            "n_kept": s["n_kept"], "n_draws": s["n_draws"], "screen_toxic_rate_all": s["screen_toxic_rate_all"],
            "screen_toxic_rate_kept": s["screen_toxic_rate_kept"],
            "first_round_rate_challenging": rate(table[table["challenging"]]),
            "first_round_rate_not_challenging": rate(table[~table["challenging"]]),
            "first_round_rate_prompt_above_0.5": rate(table[table["prompt_toxicity"] > 0.5]),
            "first_round_rate_prompt_0.3_to_0.5": rate(table[table["prompt_toxicity"] <= 0.5]),
            "kept_challenging_share": float(table.loc[table["kept"], "challenging"].mean()),
            "rule": f"{cfg.data.screen_first_draws} draws; >= {cfg.data.screen_continue_min} toxic -> "
                    f"{cfg.data.screen_more_draws} more; kept at >= {cfg.data.screen_min_toxic} toxic"}
