"""The batched grid's own machinery (fairl_lib.irl.grid): hand-written gradients against autograd,
grouped forward / backward against one path at a time, GEMM group widths, minibatch rows, the
failure-path penalty block. That the grid as a whole equals Algorithm 1 run by run is in test_irl_grid_vs_fairl.py."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from fairl_lib.irl import METHOD_NAMES, IRLConfig, make_synthetic, torch_threads
from fairl_lib.irl import grid as G
from fairl_lib.irl import losses as ls
from fairl_lib.irl.reward import path_forward


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def small():
    return make_synthetic(n_pairs=200, dim=8, seed=0, beta=2.0)


def t(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64)


def test_analytic_term_gradients_hand_worked_and_equal_to_autograd():
    # hinge M = 0.8: slope -1 inside the margin, 0 outside and at the kink (Delta = M)
    assert G.hinge_grad(t(0.0, 0.8, 2.0), 0.8).tolist() == [-1.0, 0.0, 0.0]
    # maxent tau = 1 at Delta = 0: -sigma(0) = -0.5; tau = 0.5: -sigma(0) / 0.5 = -1
    assert G.maxent_grad(t(0.0), 1.0).item() == -0.5
    assert G.maxent_grad(t(0.0), 0.5).item() == -1.0
    # against autograd (to rounding), including softplus's linear region (-Delta/tau > 20) and huge margins
    d = torch.tensor([-50.0, -10.1, -3.0, 0.0, 0.8, 0.81, 5.0, 300.0], dtype=torch.float64)
    for terms, grad_of, arg in ((ls.hinge_terms, G.hinge_grad, 0.8), (ls.maxent_terms, G.maxent_grad, 0.5)):
        x = d.clone().requires_grad_(True)
        (auto,) = torch.autograd.grad(terms(x, arg).sum(), x)
        torch.testing.assert_close(grad_of(d, arg), auto, rtol=1e-14, atol=0.0, msg=terms.__name__)


def test_term_gradients_scale_and_masked_mean_weights_hand_worked():
    d = t(-1.0, 0.0, 0.5, 3.0)
    for grad_of, arg in ((G.hinge_grad, 0.8), (G.maxent_grad, 0.5)):
        torch.testing.assert_close(grad_of(d, arg, 0.25), 0.25 * grad_of(d, arg), rtol=1e-15, atol=0.0)
        assert grad_of(d.to(torch.float32), arg, 0.25).dtype == torch.float32   # constants follow the dtype
    mask = torch.tensor([[True, False, True, False], [False, False, False, False]])
    for dtype in (torch.float32, torch.float64):
        w = G.masked_mean_weights(mask, "subset", dtype)
        assert w.dtype == dtype and w.tolist() == [[0.5, 0.0, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0]]
        w = G.masked_mean_weights(mask, "batch", dtype)
        assert w.dtype == dtype and w.tolist() == [[0.25, 0.0, 0.25, 0.0], [0.0, 0.0, 0.0, 0.0]]
    # they are the derivative of the paper's mean over S_t (losses.masked_mean) w.r.t. the values
    for reduction in ("subset", "batch"):
        x = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
        (auto,) = torch.autograd.grad(ls.masked_mean(x, mask, reduction).sum(), x)
        torch.testing.assert_close(G.masked_mean_weights(mask, reduction, torch.float64), auto, rtol=1e-15, atol=0.0)


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
    (G.grouped_forward(leaves, h) * d_r).sum().backward()
    r, hidden = G.grouped_forward(params, h, return_hidden=True)
    torch.testing.assert_close(r, G.grouped_forward(leaves, h).detach())
    grads = {name: torch.full_like(v, float("nan")) for name, v in params.items()}  # every entry overwritten
    G.grouped_backward(params, h, hidden, d_r.transpose(1, 2).contiguous().transpose(1, 2), grads)
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
    r_shared, r_grouped = G.grouped_forward(params, shared), G.grouped_forward(params, grouped)
    assert r_shared.shape == r_grouped.shape == (g, n, k)
    for gi in range(g):
        for ki in range(k):
            torch.testing.assert_close(r_shared[gi, :, ki], path_forward(path(gi, ki), shared), rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(r_grouped[gi, :, ki], path_forward(path(gi, ki), grouped[gi]),
                                       rtol=1e-12, atol=1e-12)


def test_group_width_balances_padding_against_thread_load():
    # one thread: the least padding, ties to the wider K (full grid: one group per seed)
    assert G.group_width([10] * 5) == 10 and G.group_width([2]) == 2 and G.group_width([1, 1]) == 1
    # two threads, full grid: K=10 -> 5 groups, 3 on one thread: 30 slots; K=5 -> 10 groups: 5 * 5 = 25
    assert G.group_width([10] * 5, threads=2) == 5
    # seeds with 6, 4, 2, 1 paths, 2 threads: K=1 -> 13 groups, ceil(13/2) * 1 = 7 slots; K=2 -> 7
    # groups: 4 * 2 = 8; K=6 -> 4 groups: 2 * 6 = 12
    assert G.group_width([6, 4, 2, 1, 0], threads=2) == 1
    with pytest.raises(ValueError, match="at least one seed"):
        G.group_width([0, 0])
    with pytest.raises(ValueError, match="threads >= 1"):
        G.group_width([3], threads=0)


def test_minibatch_rows_are_the_per_step_slices():
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(0)).view(3, 10)
    for bsz in (4, 5, 10, 12):                           # ragged last batch, exact, one batch, B > N
        rows = G._minibatch_rows(perm, bsz)
        expected = [perm[:, s:s + bsz].reshape(-1) for s in range(0, 10, bsz)]
        assert len(rows) == len(expected) and all(torch.equal(a, b) for a, b in zip(rows, expected))
        assert all(r.is_contiguous() for r in rows)


def test_penalty_on_the_failure_slot_block_equals_the_masked_penalty(small):
    def penalty_grads(g):
        st = g.stores[-1]
        for grad in st.opt.grads.values():
            grad.zero_()
        g.add_penalty_grad(0.7)
        return {k: v.clone() for k, v in st.opt.grads.items()}

    with torch_threads(2):                                # two threads, 3 seeds: 6 groups of K=5 (group_width)
        two = G._Grid(small.data, METHOD_NAMES, [0, 1, 2], IRLConfig(), torch.float64)
    grid = G._Grid(small.data, METHOD_NAMES, [0, 1], IRLConfig(), torch.float64)
    # per seed 6 base paths, then the 4 failure paths of the FA runs: K=5 puts them in slots 1..4 of
    # every second group; K=10 (one thread: one group per seed) in slots 6..9 of each group
    (p2,), (p1,) = two.layout.parts, grid.layout.parts    # one head: one store
    assert p2.k == 5 and p2.fail_block == (slice(1, 6, 2), slice(1, 5))
    assert p1.k == 10 and p1.fail_block == (slice(0, 2, 1), slice(6, 10))
    for g in (two, grid):
        st, part = g.active[0]
        assert all(mask is None for *_, mask in st.penalty_parts)
        block = penalty_grads(g)
        part.fail_block = None                            # force the masked form on the same layout
        st.penalty_parts = g._penalty_parts(st, part)
        assert all(mask is not None for *_, mask in st.penalty_parts)
        masked = penalty_grads(g)
        for name in block:
            torch.testing.assert_close(block[name], masked[name], rtol=0, atol=0)
        assert block["w1"].abs().sum() > 0 and block["b1"].abs().sum() == 0     # weights only (Eq. 3)
    # dropping runs unevenly leaves groups whose failure slots differ: no common block
    keep = np.ones(len(grid.pairs), dtype=bool)
    keep[[2, 3]] = False                                  # mm_fa_gt and me_fa_gt of seed 0
    grid.compact(keep)
    assert grid.layout.parts[0].fail_block is None


def test_a_failure_head_of_its_own_gets_a_store_of_its_own(small):
    cfg = IRLConfig(hidden=4, fail_head="linear")
    grid = G._Grid(small.data, METHOD_NAMES, [0, 1], cfg, torch.float64)
    base, fail = grid.stores
    assert (base.head, base.offset, base.n_paths) == ("mlp", 0, 12)
    assert (fail.head, fail.offset, fail.n_paths) == ("linear", 12, 8)
    assert set(base.bank) == {"w1", "b1", "w2", "b2"} and set(fail.bank) == {"w", "b"}
    pb, pf = grid.layout.parts
    assert pb.slot_fail is None and pf.slot_base is None and len(pf.fail_slot) == 8
    assert base.penalty_parts == [] and [w.shape[1] for _, w, _ in fail.penalty_parts] == [8]
    # the penalty reaches only the failure paths' weights
    for st in grid.stores:
        for grad in st.opt.grads.values():
            grad.zero_()
    grid.add_penalty_grad(1.0)
    assert all(g.abs().sum() == 0 for g in base.opt.grads.values()) and fail.opt.grads["b"].abs().sum() == 0
    torch.testing.assert_close(fail.opt.grads["w"], fail.params["w"], rtol=0, atol=0)
    # every failure run stops: its store leaves the layout and the baselines go on training alone
    keep = np.array([grid.pairs[r][0].failures is None for r in grid.layout.runs])   # over the active runs
    assert grid.compact(keep) and grid.layout.parts[1] is None and len(grid.active) == 1
    grid.train_epoch(0)
    assert np.all(grid.w_fail_sq() == 0)
    before = {k: v.clone() for k, v in fail.bank.items()}
    grid.save_best(np.ones(grid.layout.n_runs, dtype=bool))
    assert all(torch.equal(before[k], fail.bank[k]) for k in before)
    assert set(grid.result(2).reward.failure) == {"w", "b"}   # mm_fa_gt's failure path: from its bank


def test_eval_chunk_is_a_memory_knob_with_no_effect_on_results(small):
    """``IRLConfig.eval_chunk`` (pairs per chunk of the full-dataset evaluation: mining, validation) is left out
    of every stage key (``config.speed_knob``); that is sound only because any chunk gives the same grid, to
    the bit: same histories, same weights. 7 pairs per chunk splits the 160 training pairs unevenly."""
    from fairl_lib.irl import train_grid

    base = IRLConfig(hidden=8, max_epochs=3, patience=3, mining="epoch", val_fraction=0.2)
    one, chunked = (train_grid(small.data, dataclasses.replace(base, eval_chunk=c), seeds=[0]) for c in (2048, 7))
    for a, b in zip(one.runs, chunked.runs, strict=True):
        assert (a.method, a.seed) == (b.method, b.seed) and a.history == b.history, a.method
        pa, pb = {**a.reward.base, **(a.reward.failure or {})}, {**b.reward.base, **(b.reward.failure or {})}
        assert pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa), a.method
