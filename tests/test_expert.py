"""Expert / pairs stages (fairl_lib.stages.expert, fairl_lib.stages.pairs): stage keys, prompt selection, pair allocation.

The stages themselves run real models; the smoke pipeline (notebooks 01 and 02) exercises them end
to end. Here: keys change exactly when a setting the stage depends on changes.
"""
from __future__ import annotations

import numpy as np
import pytest

from fairl_lib.stages import expert
from fairl_lib.stages import pairs as pairs_mod
from fairl_lib.config import make_config


def _cfg(overrides: str = "", seed: int = 0, profile: str = "smoke"):
    return make_config(profile, seed=seed, overrides=overrides)


EXPERT_RELEVANT = ["rlhf.steps=5", "rlhf.lr=1e-4", "rlhf.beta=0.1", "rlhf.algorithm=\"ppo\"",
                   "data.ppo_prompt_toxicity=0.4", "data.heldout_prompts=12", "data.max_ppo_prompts=10",
                   "models.ground_truth=\"roberta\"", "models.base_lm=\"gemma3-270m\"",
                   "models.toxic_threshold=0.6"]
EXPERT_IRRELEVANT = ["gen.batch_size=8", "gen.max_new_tokens=5", "pairs.n_pairs=10", "pairs.test_fraction=0.5",
                     "data.pair_prompt_toxicity=0.7", "data.max_pair_prompts=3", "models.judge=\"bilstm\"",
                     "models.embedder=\"minilm\"", "irl.n_seeds=2", "theory.n_draws=10", "data.jigsaw_n_toxic=5"]


@pytest.mark.parametrize("override", EXPERT_RELEVANT)
def test_expert_key_changes_with_relevant_settings(override):
    assert expert.expert_key(_cfg(override)) != expert.expert_key(_cfg())


@pytest.mark.parametrize("override", EXPERT_IRRELEVANT)
def test_expert_key_ignores_other_settings(override):
    assert expert.expert_key(_cfg(override)) == expert.expert_key(_cfg())


def test_expert_key_seed_and_base_lm_argument():
    cfg = _cfg()
    assert expert.expert_key(_cfg(seed=1)) != expert.expert_key(cfg)
    assert expert.expert_key(cfg, "gemma3-270m") != expert.expert_key(cfg)
    assert expert.expert_key(cfg, cfg.models.base_lm) == expert.expert_key(cfg)
    assert expert.expert_rlhf_config(_cfg(seed=3)).seed == 3


PAIRS_RELEVANT = ["gen.batch_size=8", "gen.max_new_tokens=5", "pairs.n_pairs=10", "pairs.test_fraction=0.5",
                  "pairs.completions_per_prompt=2", "data.pair_prompt_toxicity=0.7", "data.max_pair_prompts=3",
                  "models.judge=\"bilstm\"", "models.subtypes=\"detoxify\"", "rlhf.steps=5",
                  "models.ground_truth=\"roberta\""]
PAIRS_IRRELEVANT = ["irl.n_seeds=2", "theory.n_draws=10", "data.jigsaw_n_toxic=5", "pairmix.total_pairs=7", "gen.workers=3"]


@pytest.mark.parametrize("override", PAIRS_RELEVANT)
def test_pairs_key_changes_with_relevant_settings(override):
    assert pairs_mod.pairs_settings(_cfg(override)) != pairs_mod.pairs_settings(_cfg())


@pytest.mark.parametrize("override", PAIRS_IRRELEVANT)
def test_pairs_key_ignores_other_settings(override):
    assert pairs_mod.pairs_settings(_cfg(override)) == pairs_mod.pairs_settings(_cfg())


def test_eval_key_follows_gen_and_judge_not_pairs():
    base = expert.eval_settings(_cfg())
    assert expert.eval_settings(_cfg("gen.max_new_tokens=5")) != base
    assert expert.eval_settings(_cfg("models.judge=\"bilstm\"")) != base
    assert expert.eval_settings(_cfg("pairs.n_pairs=10")) == base


def test_model_source_per_profile():
    assert expert.model_source(_cfg()) == "gguf"
    assert expert.model_source(_cfg(profile="paper")) == "hub"
    assert expert.model_source(_cfg(profile="paper"), "pythia-410m") == "hub"


@pytest.mark.parametrize("n_prompts,per,cap", [(10, 4, 0), (10, 4, 40), (10, 4, 17), (993, 5, 4000),
                                               (7, 3, 21), (0, 3, 0)])
def test_pair_counts_per_prompt(n_prompts, per, cap):
    c = pairs_mod.pair_counts_per_prompt(n_prompts, per, cap)
    assert len(c) == n_prompts
    assert (c <= per).all()
    want = n_prompts * per if cap <= 0 else cap
    assert c.sum() == want
    if len(c):
        assert c.max() - c.min() <= 1 or c.min() == per


def test_more_pairs_than_prompts_allow_is_refused():
    with pytest.raises(ValueError, match=r"n_pairs=4000 but 993 pair prompts .* allow only 2979 pairs: raise "
                                         r"pairs.completions_per_prompt to 5"):
        pairs_mod.pair_counts_per_prompt(993, 3, 4000)
    with pytest.raises(ValueError, match="0 pair prompts .* lower data.pair_prompt_toxicity"):
        pairs_mod.pair_counts_per_prompt(0, 3, 5)


def test_final_kl_uses_last_training_steps():
    import pandas as pd

    h = pd.DataFrame({"step": [0, 1, 2, 3], "kl": [np.nan, 1.0, 2.0, 3.0]})
    assert expert.final_kl(h, last=2) == pytest.approx(2.5)
    assert np.isnan(expert.final_kl(pd.DataFrame({"step": [0]})))


def test_summarize_eval():
    import pandas as pd

    df = pd.DataFrame({"model": ["base", "base", "expert", "expert"], "p_toxic": [0.9, 0.1, 0.2, 0.1],
                       "judge_p": [0.8, 0.2, 0.1, 0.1], "nll_base": [2.0, 2.0, 3.0, 1.0],
                       "nll_self": [2.0, 2.0, 1.0, 0.5], "n_tokens": [2, 2, 2, 0]})
    s = expert.summarize_eval(df, 0.5)
    assert s["toxicity_rate_base"] == 0.5 and s["toxicity_rate_expert"] == 0.0
    assert s["judge_rate_base"] == 0.5
    assert s["perplexity_base"] == pytest.approx(np.exp(1.0))
    assert s["empty_fraction_expert"] == 0.5
    assert s["kl_heldout"] == pytest.approx(((3 - 1) + (1 - 0.5)) / 2)


@pytest.mark.assets
def test_prompt_selection_real_data():
    cfg = _cfg()
    train, held = expert.rlhf_prompts(cfg)
    assert len(held) == cfg.data.heldout_prompts and len(train) == cfg.data.max_ppo_prompts
    assert set(train.prompt_id).isdisjoint(held.prompt_id)
    assert (train.prompt_toxicity > cfg.data.ppo_prompt_toxicity).all()
    pp = pairs_mod.pair_prompts(cfg)
    assert len(pp) == cfg.data.max_pair_prompts
    assert (pp.prompt_toxicity > cfg.data.pair_prompt_toxicity).all()
    assert pp.rlhf_heldout.sum() == pp.prompt_id.isin(held.prompt_id).sum()
    again = pairs_mod.pair_prompts(cfg)
    assert list(again.prompt_id) == list(pp.prompt_id)


@pytest.mark.assets
def test_screened_prompts_serve_one_purpose_each(monkeypatch):
    """With data.screen, the expert's training and held-out prompts and the pair prompts all come from the
    prompts that passed the screen, and no held-out prompt is a pair prompt. The screen's table is set by hand
    (its sampling is the smoke pipeline's job); the stage key of the expert follows the screen settings."""
    from fairl_lib.llm import data
    from fairl_lib.stages import screen

    cfg = _cfg("data.screen=true; data.heldout_prompts=5; data.max_ppo_prompts=0; data.max_pair_prompts=0")
    cand = screen.screen_candidates(cfg)
    kept = set(cand.prompt_id[:40])
    table = cand[["prompt_id", "prompt", "prompt_toxicity", "challenging"]].assign(
        n_toxic=[2 if p in kept else 0 for p in cand.prompt_id], kept=cand.prompt_id.isin(kept))
    monkeypatch.setattr(screen, "load_screen", lambda _cfg: (table, {}))
    train, held = expert.rlhf_prompts(cfg)
    pp = pairs_mod.pair_prompts(cfg)
    assert len(held) == 5 and set(train.prompt_id) | set(held.prompt_id) <= kept
    assert set(pp.prompt_id) <= kept and set(pp.prompt_id).isdisjoint(held.prompt_id)
    assert not pp.rlhf_heldout.any()
    assert set(data.filter_prompts(cand, cfg.data.screen_prompt_toxicity).prompt_id) == set(cand.prompt_id)
    assert expert.expert_key(cfg) != expert.expert_key(_cfg("data.screen=true; data.screen_min_toxic=3; "
                                                            "data.heldout_prompts=5; data.max_ppo_prompts=0; "
                                                            "data.max_pair_prompts=0"))
