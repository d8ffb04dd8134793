"""Training (Eq. 3, Alg. 1): the batched grid == the single-run reference (fairl.train_one), learning
on a known reward, errors, storage. The grid's own pieces are tested in test_irl_grid.py."""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
import torch

from fairl_lib.irl import (
    METHOD_NAMES,
    IRLConfig,
    PreferenceData,
    RewardModel,
    load_reward,
    make_synthetic,
    method_spec,
    reward_folder,
    save_reward,
    train_grid,
    train_one,
)
from fairl_lib.irl import grid as grid_module


def pairwise_accuracy(r_plus: np.ndarray, r_minus: np.ndarray) -> float:
    return float(np.mean(r_plus > r_minus))


def starc_distance(r_hat: np.ndarray, r_gt: np.ndarray) -> float:
    """STARC of Eq. 4: l1 distance of the rewards centred and scaled to unit l1 norm (0 = same up to
    a positive affine map)."""
    canon = [(r - r.mean()) / np.abs(r - r.mean()).sum() for r in (r_hat, r_gt)]
    return float(np.abs(canon[0] - canon[1]).sum())


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


# small and quick to overfit, so runs stop early at different epochs (exercises per-run stopping)
SMALL = IRLConfig(hidden=6, max_epochs=12, patience=2, lr=0.03, bottomk_rounds=5, lambda_decay=0.7,
                  p_start=0.6, p_end=0.2, p_rounds=6, val_fraction=0.25)


@pytest.fixture(scope="module")
def small():
    return make_synthetic(n_pairs=200, dim=8, seed=0, beta=2.0)


ALTERNATIVES = {"route_gradients": False, "margin_rule": "gamma", "sup_rule": "alg1",
                "sup_reference": "batch_mean", "gt_include_margin": True, "fail_reduction": "batch",
                "w_fail": 2.0, "penalty_scale": 0.3}


def assert_equals_sequential_runs(grid, data, cfg: IRLConfig) -> np.ndarray:
    """Every run of a float64 ``grid`` equals ``train_one`` (stopping, histories, rewards); returns the
    outputs the rewards were compared on."""
    h = np.concatenate([data.h_plus, data.h_minus])
    for run in grid.runs:
        ref = train_one(data, run.method, run.seed, cfg, dtype=torch.float64)
        assert (ref.epochs_run, ref.best_epoch) == (run.epochs_run, run.best_epoch)
        for key, values in run.history.items():
            np.testing.assert_allclose(values, ref.history[key], rtol=1e-9, atol=1e-10, err_msg=key)
        np.testing.assert_allclose(run.reward(h), ref.reward(h), rtol=1e-9, atol=1e-10)
        assert (run.reward.failure is None) == (method_spec(run.method).failures is None)
        if run.reward.failure is not None:
            assert (run.reward.head, run.reward.fail_head) == (cfg.head, cfg.path_head("failure"))
    return h


@pytest.mark.parametrize("head,mining,options", [("mlp", "batch", {}), ("linear", "batch", {}),
                                                 ("mlp", "epoch", {}), ("linear", "batch", ALTERNATIVES),
                                                 ("mlp", "batch", {"fail_head": "linear"}),
                                                 ("linear", "epoch", {"fail_head": "mlp", **ALTERNATIVES})])
def test_batched_grid_equals_sequential_runs(small, head, mining, options):
    cfg = dataclasses.replace(SMALL, head=head, mining=mining, **options)
    grid = train_grid(small.data, cfg, seeds=[0, 1], dtype=torch.float64)
    assert [(r.method, r.seed) for r in grid.runs] == [(m, s) for s in (0, 1) for m in METHOD_NAMES]
    assert len({r.epochs_run for r in grid.runs}) > 1, "runs should stop at different epochs"
    h = assert_equals_sequential_runs(grid, small.data, cfg)
    # runs are independent: other seeds give other rewards
    a, b = grid.get("me_fa_margin", 0).reward(h), grid.get("me_fa_margin", 1).reward(h)
    assert not np.allclose(a, b)


def test_batched_grid_on_two_threads_uses_other_layouts_and_equals_sequential_runs(small, monkeypatch):
    widths = []
    group_width = grid_module.group_width
    spy = (lambda counts, threads=1: widths.append(group_width(counts, threads)) or widths[-1])
    monkeypatch.setattr(grid_module, "group_width", spy)
    grid = train_grid(small.data, SMALL, seeds=[0, 1, 2], dtype=torch.float64, threads=2)
    assert widths[0] == 5 and len(set(widths)) > 1, widths      # 6 groups of 5, then narrower as runs stop
    assert_equals_sequential_runs(grid, small.data, SMALL)


def test_mixed_heads_on_two_threads_equal_sequential_runs(small):
    """A linear failure head on MLP base paths: two path stores, regrouped as runs stop (two threads)."""
    cfg = dataclasses.replace(SMALL, fail_head="linear")
    grid = train_grid(small.data, cfg, seeds=[0, 1, 2], dtype=torch.float64, threads=2)
    assert_equals_sequential_runs(grid, small.data, cfg)


def test_batched_grid_matches_sequential_in_float32(small):
    cfg = dataclasses.replace(SMALL, max_epochs=3)
    grid = train_grid(small.data, cfg, methods=["mm_fa_gt", "me_irl"], seeds=[4])
    h = small.data.h_plus
    for run in grid.runs:
        ref = train_one(small.data, run.method, run.seed, cfg)
        np.testing.assert_allclose(run.reward(h), ref.reward(h), rtol=1e-4, atol=1e-4)


def test_all_methods_recover_a_known_linear_reward():
    syn = make_synthetic(n_pairs=1500, dim=16, seed=1, nonlinearity=0.0)
    cfg = IRLConfig(head="linear", max_epochs=15, patience=3, lr=0.01)
    grid = train_grid(syn.data, cfg, seeds=[0])
    h, r_gt, _ = syn.env.sample_outputs(2000, seed=5)
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, 2000, (2, 3000))
    random_starc = starc_distance(rng.standard_normal(2000), r_gt)
    for run in grid.runs:
        r = run.reward(h)
        better, worse = np.where(r_gt[i] > r_gt[j], i, j), np.where(r_gt[i] > r_gt[j], j, i)
        assert pairwise_accuracy(r[better], r[worse]) > 0.85, run.method
        assert starc_distance(r, r_gt) < 0.5 * random_starc, run.method
        if method_spec(run.method).failures is not None:
            assert run.history["fail_frac"][0] > 0, run.method
            assert run.history["lambda_t"][0] == 10.0


def test_mlp_head_learns_a_nonlinear_reward():
    syn = make_synthetic(n_pairs=1500, dim=16, seed=2, nonlinearity=0.3)
    cfg = IRLConfig(hidden=16, max_epochs=10, patience=3)
    res = train_grid(syn.data, cfg, methods=["me_fa_margin"], seeds=[0])
    h, r_gt, _ = syn.env.sample_outputs(2000, seed=6)
    assert np.corrcoef(res.runs[0].reward(h), r_gt)[0, 1] > 0.8


def test_unknown_method_lists_the_valid_ones(small):
    with pytest.raises(ValueError, match="mm_irl, me_irl, mm_fa_gt, me_fa_gt, mm_fa_margin, me_fa_margin"):
        train_grid(small.data, SMALL, methods=["mm_irl", "fa_irl"])
    with pytest.raises(ValueError, match="valid"):
        train_one(small.data, "maxent", 0, SMALL)


def test_nan_embeddings_are_rejected_with_a_row_count():
    h = np.random.default_rng(0).standard_normal((50, 4))
    hm = h.copy()
    h[[3, 7], 1] = np.nan
    hm[9, 0] = np.inf
    with pytest.raises(ValueError, match="3 of 50 preference pairs"):
        PreferenceData(h, hm)


def test_a_diverging_loss_raises_floating_point_error_naming_the_run(small):
    cfg = dataclasses.replace(SMALL, lr=1e38, head="linear")
    with pytest.raises(FloatingPointError, match=r"mm_irl \(seed 0\).*epoch \d+.*lower learning rate"):
        train_grid(small.data, cfg, methods=["mm_irl"], seeds=[0])
    # (torch.optim.Adam cannot even turn lr / (1 - beta1) = 1e39 into a float32 step, so a lower lr)
    with pytest.raises(FloatingPointError, match=r"me_fa_gt \(seed 2\).*lr"):
        train_one(small.data, "me_fa_gt", 2, dataclasses.replace(cfg, lr=1e30))


def test_gt_methods_need_labels(small):
    unlabelled = PreferenceData(small.data.h_plus, small.data.h_minus)
    with pytest.raises(ValueError, match="labels"):
        train_grid(unlabelled, SMALL, methods=["me_fa_gt"])


def test_config_validates_choices_and_is_frozen():
    with pytest.raises(ValueError, match="linear, mlp"):
        IRLConfig(head="transformer")
    with pytest.raises(ValueError, match="bottomk"):
        IRLConfig(margin_rule="topk")
    with pytest.raises(ValueError, match="linear, mlp"):
        IRLConfig(fail_head="conv")
    assert [IRLConfig(head="mlp", fail_head=f).path_head("failure") for f in ("", "linear", "mlp")] == \
        ["mlp", "linear", "mlp"]
    assert IRLConfig(head="mlp", fail_head="linear").path_head("base") == "mlp"
    with pytest.raises(dataclasses.FrozenInstanceError):
        IRLConfig().lr = 1.0  # type: ignore[misc]
    defaults = IRLConfig()
    assert (defaults.margin, defaults.tau, defaults.lambda0, defaults.lr, defaults.batch_size,
            defaults.max_epochs, defaults.bottomk_start, defaults.bottomk_end, defaults.bottomk_rounds,
            defaults.n_seeds) == (0.8, 1.0, 10.0, 1e-3, 32, 800, 0.2, 0.0, 100, 5)


def test_save_and_load_reward_round_trip(small, tmp_path):
    cfg = dataclasses.replace(SMALL, max_epochs=2)
    grid = train_grid(small.data, cfg, methods=["me_fa_gt", "mm_irl"], seeds=[3])
    h = small.data.h_minus
    for run in grid.runs:
        folder = reward_folder(tmp_path / "results" / "smoke", run.method, run.seed)
        assert folder.parts[-3:] == ("rewards", run.method, "seed3")
        save_reward(folder, run.reward, cfg, extra={"history": run.history})
        assert sorted(os.listdir(folder)) == ["reward.json", "reward.safetensors"]  # no temp files left
        back = load_reward(folder)
        np.testing.assert_array_equal(back(h), run.reward(h))
        assert (back.failure is None) == (run.method == "mm_irl")
        assert back.meta["method"] == run.method and back.meta["seed"] == 3
        assert back.meta["config"]["margin"] == 0.8
        assert back.meta["extra"]["history"]["val_loss"] == run.history["val_loss"]
    with pytest.raises(FileNotFoundError, match="train it first"):
        load_reward(tmp_path / "nowhere")


def test_a_failure_head_of_its_own_is_saved_and_loaded(small, tmp_path):
    cfg = dataclasses.replace(SMALL, max_epochs=2, fail_head="linear")
    run = train_grid(small.data, cfg, methods=["me_fa_margin"], seeds=[1]).runs[0]
    assert (run.reward.head, run.reward.fail_head, run.reward.hidden, run.reward.fail_hidden) == \
        ("mlp", "linear", 6, 0)
    assert "fail_head=linear" in repr(run.reward)
    back = load_reward(save_reward(tmp_path / "r", run.reward, cfg))
    assert (back.head, back.fail_head) == ("mlp", "linear") and back.meta["config"]["fail_head"] == "linear"
    h = small.data.h_plus
    for a, b in zip(back.components(h), run.reward.components(h)):
        np.testing.assert_array_equal(a, b)
    meta = json.loads((tmp_path / "r" / "reward.json").read_text())
    assert (meta["fail_head"], meta["fail_hidden"]) == ("linear", 0)
    meta["fail_head"] = "mlp"                              # a reward.json that does not fit its weights
    (tmp_path / "r" / "reward.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="do not belong together"):
        load_reward(tmp_path / "r")


def test_reward_model_components_and_shape_check(small):
    cfg = dataclasses.replace(SMALL, max_epochs=1)
    run = train_grid(small.data, cfg, methods=["mm_fa_margin"], seeds=[0]).runs[0]
    h = small.data.h_plus[:10]
    r_d, r_f = run.reward.components(h)
    np.testing.assert_allclose(run.reward(h), r_d + r_f)
    assert isinstance(run.reward, RewardModel) and run.reward.dim == 8 and run.reward.hidden == 6
    with pytest.raises(ValueError, match=r"\(n, 8\)"):
        run.reward(np.zeros((3, 5)))


def test_weaker_failure_penalty_leaves_a_larger_failure_path(small):
    """Eq. 3's c * lambda_t/2 ||w_F||^2: a smaller c must leave larger failure-path weights."""
    norms = {}
    for c in (1.0, 0.01):
        cfg = dataclasses.replace(SMALL, penalty_scale=c, patience=50, max_epochs=8)
        run = train_one(small.data, "me_fa_margin", 0, cfg, dtype=torch.float64)
        norms[c] = run.history["w_fail_sq"][-1]
    assert norms[0.01] > norms[1.0]
