"""The preference pairs (notebook 02's stage; paper Sec. 5, "Preference Data for IRL").

Pairs (o_pre, o_post) on prompts with toxicity > 0.5, o_post preferred; the artifact's format is
:mod:`fairl_lib.analysis.pairset`. Stage (``fairl_lib.cache``, ``results/<profile>/stages/pairs/<key>/``):

- ``pairs`` (:func:`pairs_stage`): the pair artifact of :mod:`fairl_lib.analysis.pairset`. Key: the expert's
  key + ``[gen]``, ``[pairs]``, the pair prompt selection, every scorer, the embedder, seed.
  Generation is written in chunks inside ``.partial`` so a killed run resumes.

The pair prompts (toxicity > ``pair_prompt_toxicity``) overlap the expert's held-out prompts (about
90 of the 128 held-out prompts of the cpu profile are above 0.5): the paper draws pairs from all
prompts above 0.5, and pairs measure what the expert *does*, not how it generalises. The column
``rlhf_heldout`` marks those prompts; the expert's own toxicity numbers use only held-out prompts.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fairl_lib.analysis import pairset
from fairl_lib.analysis.pairset import load_pairset
from fairl_lib.cache import cached_stage
from fairl_lib.config import result_settings
from fairl_lib.llm import data
from fairl_lib.llm.models import embed, load_lm
from fairl_lib.stages.expert import (
    REWARD_KIND,
    base_name,
    expert_key,
    expert_stage,
    load_expert,
    model_source,
    rlhf_prompts,
)
from fairl_lib.stages.generation import chunked_generate
from fairl_lib.stages.screen import screened_prompts

PAIRS_STAGE, PAIRS_VERSION = "pairs", "1"


def pairs_settings(cfg, base_lm: str | None = None) -> dict[str, Any]:
    """The ``pairs`` stage key."""
    m = cfg.models
    return {"expert": expert_key(cfg, base_lm), "gen": cfg.gen.key(),
            "pairs": result_settings(cfg.pairs),
            "prompts": {"pair_prompt_toxicity": cfg.data.pair_prompt_toxicity,
                        "max_pair_prompts": cfg.data.max_pair_prompts, "rtp_sources": list(cfg.data.rtp_sources)},
            "ground_truth": m.ground_truth, "subtypes": m.subtypes, "judge": m.judge, "embedder": m.embedder,
            "toxic_threshold": m.toxic_threshold, "reward_kind": REWARD_KIND, "seed": cfg.seed}


def pair_prompts(cfg) -> pd.DataFrame:
    """Pair prompts: toxicity > ``pair_prompt_toxicity`` (paper: 0.5), at most ``max_pair_prompts``
    (the first in the seed's hash order), in ``prompt_id`` order, with ``rlhf_heldout`` marking the
    prompts the expert never trained on.

    With ``data.screen``, only prompts that passed the screen, and never the expert's held-out prompts
    (those measure notebook 01's and 08's toxicity on prompts no pair and no RLHF step has seen)."""

    held = set(rlhf_prompts(cfg)[1]["prompt_id"])
    if cfg.data.screen:
        pool = screened_prompts(cfg)
        pool = pool[~pool["prompt_id"].isin(held)].reset_index(drop=True)
    else:
        pool = data.load_rtp(sources=cfg.data.rtp_sources)
    df = data.filter_prompts(pool, cfg.data.pair_prompt_toxicity)
    if df.empty:
        raise ValueError(f"No RealToxicityPrompts prompt has prompt_toxicity > {cfg.data.pair_prompt_toxicity}: "
                         f"lower data.pair_prompt_toxicity or check the RealToxicityPrompts files.")
    if cfg.data.max_pair_prompts and len(df) > cfg.data.max_pair_prompts:
        keep = np.sort(data._hash_order(df["prompt"], cfg.seed + 2)[: cfg.data.max_pair_prompts])
        df = df.iloc[keep].reset_index(drop=True)
    return df.assign(rlhf_heldout=df["prompt_id"].isin(held))


# --------------------------------------------------------------------------- pairs stage


def pair_counts_per_prompt(n_prompts: int, per_prompt: int, n_pairs: int) -> np.ndarray:
    """How many pairs each prompt gets: ``per_prompt`` each, unless that exceeds ``n_pairs``; then
    ``n_pairs`` spread as evenly as possible (the first prompts in the given order get one more).

    ``n_pairs <= 0`` means no cap.

    Raises:
        ValueError: ``n_pairs`` exceeds what the prompts allow (``n_prompts * per_prompt``), naming
            the settings that would make it fit; nothing is generated.
    """
    total = n_prompts * per_prompt
    if n_pairs > total:
        need = -(-n_pairs // n_prompts) if n_prompts else None
        fix = (f"raise pairs.completions_per_prompt to {need}" if need else "lower data.pair_prompt_toxicity")
        raise ValueError(f"pairs.n_pairs={n_pairs} but {n_prompts} pair prompts x pairs.completions_per_prompt="
                         f"{per_prompt} allow only {total} pairs: {fix} or lower pairs.n_pairs.")
    if n_pairs <= 0 or total <= n_pairs or n_prompts == 0:
        return np.full(n_prompts, per_prompt, dtype=int)
    q, r = divmod(n_pairs, n_prompts)
    counts = np.full(n_prompts, q, dtype=int)
    counts[:r] += 1
    return counts


def pairs_stage_dir(cfg, base_lm: str | None = None) -> Path:
    """Build (or reuse) the pair artifact; returns the finished stage folder."""

    settings = pairs_settings(cfg, base_lm)
    exp_folder = expert_stage(cfg, base_lm)

    def compute(work: Path) -> None:

        prompts_df = pair_prompts(cfg)
        order = pairset.prompt_order(prompts_df["prompt_id"], cfg.seed)
        counts = np.zeros(len(prompts_df), dtype=int)
        counts[order] = pair_counts_per_prompt(len(prompts_df), cfg.pairs.completions_per_prompt, cfg.pairs.n_pairs)
        idx = np.repeat(np.arange(len(prompts_df)), counts)
        sample = np.concatenate([np.arange(c) for c in counts]) if len(counts) else np.zeros(0, int)
        rows = prompts_df.iloc[idx].reset_index(drop=True)
        prompts = list(rows["prompt"])
        base = load_lm(base_name(cfg, base_lm), source=model_source(cfg, base_lm))
        o_pre = chunked_generate(base, prompts, cfg.gen, cfg.seed * 2 + 1, work, "pre")
        del base
        expert = load_lm(load_expert(exp_folder).policy)
        o_post = chunked_generate(expert, prompts, cfg.gen, cfg.seed * 2 + 2, work, "post")
        del expert
        df = pd.DataFrame({
            "pair_id": [f"{p}-{s}" for p, s in zip(rows["prompt_id"], sample)],
            "prompt_id": rows["prompt_id"], "prompt": rows["prompt"], "sample": sample,
            "prompt_toxicity": rows["prompt_toxicity"], "rlhf_heldout": rows["rlhf_heldout"],
            "o_pre": o_pre, "o_post": o_post,
            "split": pairset.split_by_prompt(rows["prompt_id"], cfg.pairs.test_fraction, cfg.seed)})
        df = pairset.score_pairs(df, cfg.models.ground_truth, cfg.models.subtypes, cfg.models.judge,
                           cfg.models.toxic_threshold, REWARD_KIND)
        emb_pre, emb_post = embed(o_pre, cfg.models.embedder), embed(o_post, cfg.models.embedder)
        meta = {"settings": settings, "base_lm": base_name(cfg, base_lm), "expert_stage": exp_folder.name,
                "n_pairs": len(df), "n_prompts": int((counts > 0).sum()), "pair_types": pairset.count_pair_types(df),
                "n_train": int((df.split == "train").sum()), "n_test": int((df.split == "test").sum()),
                "ground_truth": cfg.models.ground_truth, "subtypes": cfg.models.subtypes,
                "judge": cfg.models.judge, "embedder": cfg.models.embedder,
                "toxic_threshold": cfg.models.toxic_threshold}
        pairset.save_pairset(work, pairset.PairSet(df, emb_pre, emb_post, meta))
        for f in work.glob("gen_*.json"):
            f.unlink()

    return cached_stage(cfg, PAIRS_STAGE, settings, compute, version=PAIRS_VERSION)


def pairs_stage(cfg, base_lm: str | None = None):
    """The pair artifact (:class:`fairl_lib.analysis.pairset.PairSet`) of ``base_lm``'s base and expert (cached).

    ``meta["stage_dir"]`` is set to the stage folder. Notebooks 02, 04-07 call this.
    """

    folder = pairs_stage_dir(cfg, base_lm)
    ps = load_pairset(folder)
    ps.meta["stage_dir"] = str(folder)
    return ps
