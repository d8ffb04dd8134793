"""Training (Eq. 3, Alg. 1): batched grid == sequential runs, learning on a known reward, errors, storage."""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import torch

from fairl_lib.irl.reward import (
    RewardModel,
    grouped_backward,
    grouped_forward,
    load_reward,
    path_forward,
    reward_folder,
    save_reward,
)
from fairl_lib.irl.synthetic import make_synthetic
from fairl_lib.irl.train import (
    METHOD_NAMES,
    IRLConfig,
    PreferenceData,
    _Grid,
    _minibatch_rows,
    group_width,
    method_spec,
    torch_threads,
    train_grid,
    train_one,
)
from fairl_lib.metrics import pairwise_accuracy, starc_distance


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny tensors: a second intra-op thread only adds OpenMP wake-ups (slow on a shared CPU)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
    return h


@pytest.mark.parametrize("head,mining,options", [("mlp", "batch", {}), ("linear", "batch", {}),
                                                 ("mlp", "epoch", {}), ("linear", "batch", ALTERNATIVES)])
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
    import fairl_lib.irl.train as train_mod
    widths = []
    spy = (lambda counts, threads=1: widths.append(group_width(counts, threads)) or widths[-1])
    monkeypatch.setattr(train_mod, "group_width", spy)
    grid = train_grid(small.data, SMALL, seeds=[0, 1, 2], dtype=torch.float64, threads=2)
    assert widths[0] == 5 and len(set(widths)) > 1, widths      # 6 groups of 5, then narrower as runs stop
    assert_equals_sequential_runs(grid, small.data, SMALL)


@pytest.mark.parametrize("head", ["mlp", "linear"])
def test_grouped_backward_equals_autograd(head):
    gen = torch.Generator().manual_seed(0)
    g, n, d, k, hid = 3, 10, 7, 4, 5
    shapes = {"mlp": {"w1": (g, d, k, hid), "b1": (g, k, hid), "w2": (g, k, hid), "b2": (g, k)},
              "linear": {"w": (g, d, k), "b": (g, k)}}[head]
    params = {name: torch.randn(shape, generator=gen, dtype=torch.float64) for name, shape in shapes.items()}
    h = torch.randn(g, n, d, generator=gen, dtype=torch.float64)
    d_r = torch.randn(g, n, k, generator=gen, dtype=torch.float64)
    leaves = {name: v.clone().requires_grad_(True) for name, v in params.items()}
    (grouped_forward(leaves, h) * d_r).sum().backward()
    r, hidden = grouped_forward(params, h, return_hidden=True)
    torch.testing.assert_close(r, grouped_forward(leaves, h).detach())
    grads = {name: torch.full_like(v, float("nan")) for name, v in params.items()}  # every entry overwritten
    grouped_backward(params, h, hidden, d_r.transpose(1, 2).contiguous().transpose(1, 2), grads)
    for name in params:
        torch.testing.assert_close(grads[name], leaves[name].grad, rtol=1e-12, atol=1e-12, msg=name)


@pytest.mark.parametrize("head", ["mlp", "linear"])
def test_grouped_forward_equals_each_path_on_shared_and_grouped_rows(head):
    gen = torch.Generator().manual_seed(1)
    g, n, d, k, hid = 3, 6, 5, 4, 7
    shapes = {"mlp": {"w1": (g, d, k, hid), "b1": (g, k, hid), "w2": (g, k, hid), "b2": (g, k)},
              "linear": {"w": (g, d, k), "b": (g, k)}}[head]
    params = {name: torch.randn(shape, generator=gen, dtype=torch.float64) for name, shape in shapes.items()}
    path = (lambda gi, ki: {name: (v[gi, :, ki] if name in ("w1", "w") else v[gi, ki])
                            for name, v in params.items()})
    shared, grouped = torch.randn(n, d, generator=gen, dtype=torch.float64), torch.randn(g, n, d, generator=gen,
                                                                                         dtype=torch.float64)
    r_shared, r_grouped = grouped_forward(params, shared), grouped_forward(params, grouped)
    assert r_shared.shape == r_grouped.shape == (g, n, k)
    for gi in range(g):
        for ki in range(k):
            torch.testing.assert_close(r_shared[gi, :, ki], path_forward(path(gi, ki), shared), rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(r_grouped[gi, :, ki], path_forward(path(gi, ki), grouped[gi]),
                                       rtol=1e-12, atol=1e-12)


def test_group_width_balances_padding_against_thread_load():
    # one thread: the least padding, ties to the wider K (full grid: one group per seed)
    assert group_width([10] * 5) == 10 and group_width([2]) == 2 and group_width([1, 1]) == 1
    # two threads, full grid: K=10 -> 5 groups, 3 on one thread: 30 slots; K=5 -> 10 groups: 5 * 5 = 25
    assert group_width([10] * 5, threads=2) == 5
    # seeds with 6, 4, 2, 1 paths, 2 threads: K=1 -> 13 groups, ceil(13/2) * 1 = 7 slots; K=2 -> 7
    # groups: 4 * 2 = 8; K=6 -> 4 groups: 2 * 6 = 12
    assert group_width([6, 4, 2, 1, 0], threads=2) == 1
    with pytest.raises(ValueError, match="at least one seed"):
        group_width([0, 0])
    with pytest.raises(ValueError, match="threads >= 1"):
        group_width([3], threads=0)


def test_minibatch_rows_are_the_per_step_slices():
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(0)).view(3, 10)
    for bsz in (4, 5, 10, 12):                           # ragged last batch, exact, one batch, B > N
        rows = _minibatch_rows(perm, bsz)
        expected = [perm[:, s:s + bsz].reshape(-1) for s in range(0, 10, bsz)]
        assert len(rows) == len(expected) and all(torch.equal(a, b) for a, b in zip(rows, expected))
        assert all(r.is_contiguous() for r in rows)


def test_penalty_on_the_failure_slot_block_equals_the_masked_penalty(small):
    def penalty_grads(g):
        for grad in g.opt.grads.values():
            grad.zero_()
        g.add_penalty_grad(0.7)
        return {k: v.clone() for k, v in g.opt.grads.items()}

    with torch_threads(2):                                # two threads, 3 seeds: 6 groups of K=5 (group_width)
        two = _Grid(small.data, METHOD_NAMES, [0, 1, 2], IRLConfig(), torch.float64)
    grid = _Grid(small.data, METHOD_NAMES, [0, 1], IRLConfig(), torch.float64)
    # per seed 6 base paths, then the 4 failure paths of the FA runs: K=5 puts them in slots 1..4 of
    # every second group; K=10 (one thread: one group per seed) in slots 6..9 of each group
    assert two.layout.k == 5 and two.layout.fail_block == (slice(1, 6, 2), slice(1, 5))
    assert grid.layout.k == 10 and grid.layout.fail_block == (slice(0, 2, 1), slice(6, 10))
    for g in (two, grid):
        assert all(mask is None for *_, mask in g.penalty_parts)
        block = penalty_grads(g)
        g.layout.fail_block = None                        # force the masked form on the same layout
        g.penalty_parts = g._penalty_parts()
        assert all(mask is not None for *_, mask in g.penalty_parts)
        masked = penalty_grads(g)
        for name in block:
            torch.testing.assert_close(block[name], masked[name], rtol=0, atol=0)
        assert block["w1"].abs().sum() > 0 and block["b1"].abs().sum() == 0     # weights only (Eq. 3)
    # dropping runs unevenly leaves groups whose failure slots differ: no common block
    keep = np.ones(len(grid.pairs), dtype=bool)
    keep[[2, 3]] = False                                  # mm_fa_gt and me_fa_gt of seed 0
    grid.compact(keep)
    assert grid.layout.fail_block is None


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
    with pytest.raises(FloatingPointError, match=r"me_fa_gt \(seed 2\).*lr"):
        train_one(small.data, "me_fa_gt", 2, cfg)


def test_gt_methods_need_labels(small):
    unlabelled = PreferenceData(small.data.h_plus, small.data.h_minus)
    with pytest.raises(ValueError, match="labels"):
        train_grid(unlabelled, SMALL, methods=["me_fa_gt"])


def test_config_validates_choices_and_is_frozen():
    with pytest.raises(ValueError, match="linear, mlp"):
        IRLConfig(head="transformer")
    with pytest.raises(ValueError, match="bottomk"):
        IRLConfig(margin_rule="topk")
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
