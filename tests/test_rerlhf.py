"""Re-RLHF (Figure 3 right): learned text reward composition, normalisation, stage keys."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from fairl_lib.config import ConfigError, make_config
from fairl_lib.irl import RewardModel, load_reward, save_reward
from fairl_lib.irl.reward import init_path, path_generator
from fairl_lib.stages import rerlhf


def _reward(dim: int = 8, head: str = "mlp", failure: bool = True, seed: int = 0) -> RewardModel:
    base = init_path(dim, head, 5, path_generator(seed, "base"))
    fail = init_path(dim, head, 5, path_generator(seed, "failure")) if failure else None
    return RewardModel(base, fail, {"method": "me_fa_margin", "seed": seed})


class FakeEmbedder:
    """Deterministic text -> vector map (a hash-seeded Gaussian), records its calls."""

    def __init__(self, dim: int = 8):
        self.dim, self.calls = dim, []

    def embed(self, texts):
        self.calls.append(list(texts))
        out = []
        for t in texts:
            rng = np.random.default_rng(abs(hash(("fake", t))) % (2**32))
            out.append(rng.normal(size=self.dim).astype(np.float32))
        return np.stack(out) if out else np.zeros((0, self.dim), np.float32)


@pytest.mark.parametrize("head,failure", [("mlp", True), ("linear", False)])
def test_text_reward_equals_reward_on_embeddings(head, failure):
    rm, emb = _reward(head=head, failure=failure), FakeEmbedder()
    texts = ["you are kind", "shut up", "", "the weather is nice today"]
    fn = rerlhf.LearnedTextReward(rm, emb)
    out = fn(texts)
    assert isinstance(out, list) and len(out) == 4 and all(isinstance(v, float) for v in out)
    np.testing.assert_allclose(out, rm(emb.embed(texts)), rtol=1e-6)
    scaled = rerlhf.LearnedTextReward(rm, emb, scale=2.5, shift=-1.0)
    # the affine map is applied in float64 to the float32 reward (a value near 0 would fail a float32 rtol)
    raw = np.asarray(rm(emb.embed(texts)), dtype=np.float64)
    np.testing.assert_allclose(scaled(texts), 2.5 * raw - 1.0, rtol=1e-6, atol=1e-7)
    assert fn([]) == []


def test_text_reward_from_saved_folder(tmp_path):
    rm, emb = _reward(), FakeEmbedder()
    rm2 = load_reward(save_reward(tmp_path / "r", rm))
    texts = ["a", "b c"]
    np.testing.assert_allclose(rerlhf.LearnedTextReward(rm2, emb)(texts), rm(emb.embed(texts)), rtol=1e-6)


def test_affine_for_hand_worked():
    r = np.array([1.0, 3.0])          # mean 2, std 1
    g = np.array([0.2, 0.6, 0.4, 0.4])  # mean 0.4, std sqrt(0.02)
    a, b = rerlhf.affine_for(r, g, "match_gt")
    assert a == pytest.approx(np.sqrt(0.02)) and b == pytest.approx(0.4 - 2 * np.sqrt(0.02))
    mapped = a * r + b
    assert mapped.mean() == pytest.approx(g.mean()) and mapped.std() == pytest.approx(g.std())
    assert rerlhf.affine_for(r, None, "standardize") == pytest.approx((1.0, -2.0))
    assert rerlhf.affine_for(r, None, "none") == (1.0, 0.0)
    assert rerlhf.affine_for(np.ones(3), g, "match_gt")[0] == 1.0  # constant reward: no rescaling
    with pytest.raises(ValueError, match="valid"):
        rerlhf.affine_for(r, g, "minmax")
    with pytest.raises(ValueError, match="ground-truth"):
        rerlhf.affine_for(r, None, "match_gt")


def test_affine_preserves_ranking():
    rng = np.random.default_rng(0)
    r, g = rng.normal(size=50), rng.uniform(size=50)
    a, b = rerlhf.affine_for(r, g, "match_gt")
    assert a > 0
    assert np.array_equal(np.argsort(a * r + b), np.argsort(r))


def test_config_section_and_validation():
    cfg = make_config("smoke")
    assert isinstance(cfg.rerlhf, rerlhf.RerlhfConfig)
    with pytest.raises(ConfigError, match="normalize"):
        make_config("smoke", overrides='rerlhf.normalize="minmax"')
    assert cfg.rerlhf.method_of("fa_irl") == "auto" and cfg.rerlhf.method_of("ground_truth") is None
    with pytest.raises(ValueError, match="valid"):
        cfg.rerlhf.method_of("oracle")


def test_ground_truth_run_reuses_expert_only_with_identical_settings():
    from fairl_lib.stages.expert import expert_rlhf_config, expert_settings

    cfg = make_config("smoke", seed=3)
    assert rerlhf.run_rlhf_config(cfg) == expert_rlhf_config(cfg)
    assert rerlhf.reuses_expert(cfg)
    red = make_config("smoke", seed=3, overrides=f"rerlhf.steps={cfg.rlhf.steps + 1}")
    assert not rerlhf.reuses_expert(red)
    rc = rerlhf.run_rlhf_config(red)
    assert rc.steps == cfg.rlhf.steps + 1 and rc.seed == 3
    # only the steps change; every other RLHF setting stays the expert's
    assert dataclasses.replace(rc, steps=cfg.rlhf.steps) == expert_rlhf_config(red)
    assert not rerlhf.reuses_expert(make_config("smoke", overrides="rerlhf.reuse_expert=false"))
    s = rerlhf.run_settings(red, "ground_truth")
    assert s["base_lm"] == expert_settings(red)["base_lm"] and s["rlhf"]["steps"] == cfg.rlhf.steps + 1


def test_stage_keys():
    cfg = make_config("smoke")
    info = {"method": "me_fa_margin", "digest": "abc", "normalize": "match_gt", "scale": 0.5, "shift": 0.1}
    keys = rerlhf.stage_keys(cfg, {"fa_irl": info, "irl": {**info, "method": "me_irl", "digest": "def"}})
    assert set(keys) == set(rerlhf.KINDS) and len(set(keys.values())) == 3
    assert keys == rerlhf.stage_keys(cfg, {"fa_irl": info, "irl": {**info, "method": "me_irl", "digest": "def"}})
    # a retrained reward (new digest), another scale, seed or step count -> a new stage
    assert rerlhf.stage_keys(cfg, {"fa_irl": {**info, "digest": "xyz"}})["fa_irl"] != keys["fa_irl"]
    assert rerlhf.stage_keys(cfg, {"fa_irl": {**info, "scale": 0.6}})["fa_irl"] != keys["fa_irl"]
    assert rerlhf.stage_keys(make_config("smoke", seed=1), {"fa_irl": info})["fa_irl"] != keys["fa_irl"]
    assert rerlhf.stage_keys(make_config("smoke", overrides="rerlhf.steps=9"))["ground_truth"] != keys["ground_truth"]
    with pytest.raises(ValueError, match="reward_info"):
        rerlhf.run_settings(cfg, "fa_irl")


def test_history_curves_handles_missing_judge():
    import pandas as pd

    h = pd.DataFrame({"step": [0, 1, 2], "reward": [np.nan, 0.5, 0.6], "eval_tox_rate": [0.2, np.nan, 0.1],
                      "eval_tox_mean": [0.3, np.nan, 0.2]})
    c = rerlhf.history_curves(h)
    assert c["step"] == [0, 2] and c["tox_rate"] == [0.2, 0.1] and all(np.isnan(c["judge_rate"]))


@pytest.mark.assets
def test_composition_with_real_embedder():
    from fairl_lib.llm.models import Embedder

    emb = Embedder("minilm")
    rm = _reward(dim=emb.spec.dim)
    texts = ["I hope you have a wonderful day.", "You are a stupid idiot.", ""]
    out = rerlhf.LearnedTextReward(rm, emb, scale=0.3, shift=0.2)(texts)
    h = emb.embed(texts)
    assert h.shape == (3, 384)
    np.testing.assert_allclose(out, 0.3 * rm(torch.as_tensor(h)) + 0.2, rtol=1e-5)


def test_pooled_final_averages_runs_and_measures_their_spread():
    a = {"toxicity_rate": 0.02, "toxicity_mean": 0.1, "judge_rate": 0.01, "judge_mean": 0.05, "perplexity": 20.0,
         "empty_fraction": 0.0, "n_completions": 1024}
    b = {**a, "toxicity_rate": 0.05, "judge_rate": 0.03, "perplexity": 30.0}
    p = rerlhf.pooled_final([a, b])
    assert p["toxicity_rate"] == pytest.approx(0.035) and p["perplexity"] == pytest.approx(25.0)
    assert p["n_completions"] == 2048 and p["between_run_spread"] == pytest.approx(0.03)
    assert np.isnan(rerlhf.pooled_final([a])["between_run_spread"])


def test_training_runs_of_an_arm_have_their_own_seed_and_stage():
    cfg = make_config("smoke", overrides="rerlhf.train_seeds=3")
    assert rerlhf.arm_runs(cfg, "fa_irl") == [0, 1, 2] and rerlhf.arm_runs(cfg, "ground_truth") == [0]
    assert [rerlhf.run_rlhf_config(cfg, t).seed for t in (0, 1, 2)] == [cfg.seed, cfg.seed + 1, cfg.seed + 2]
    info = {"method": "me_fa_margin", "digest": "abc", "normalize": "match_gt", "scale": 1.0, "shift": 0.0}
    keys = {rerlhf.stage_key(rerlhf.STAGE, rerlhf.run_settings(cfg, "fa_irl", info, t), rerlhf.STAGE_VERSION)
            for t in (0, 1, 2)}
    assert len(keys) == 3
    assert rerlhf.run_label("irl", 0) == "irl" and rerlhf.run_label("irl", 2) == "irl/seed+2"
    with pytest.raises(ConfigError, match="train_seeds"):
        make_config("smoke", overrides="rerlhf.train_seeds=0")
