"""Alg. 1 lines 3-10 and 13: failure sets, sampling, schedules; empty failure sets in training."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fairl_lib.irl import IRLConfig, make_synthetic, train_grid
from fairl_lib.irl import failures as fl


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def t(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64)


def test_margin_failures_use_delta_at_most_gamma():
    assert fl.margin_failures(t(-1.0, 0.0, 0.5, 0.8, 1.0), 0.5).tolist() == [True, True, True, False, False]


def test_bottomk_flags_the_smallest_margins():
    d = t(0.5, -1.0, 2.0, 0.1, 0.3, 1.0, -0.2, 0.9, 3.0, 0.0)
    # 20% of 10 -> k = 2: the two smallest are -1.0 and -0.2
    assert np.flatnonzero(fl.bottomk_failures(d, 0.2).numpy()).tolist() == [1, 6]
    assert not fl.bottomk_failures(d, 0.0).any()
    assert fl.bottomk_failures(d, 1.0).all()


def test_bottomk_count_rounds_the_fraction():
    assert [fl.bottomk_count(32, f) for f in (0.2, 0.1, 0.01, 0.0)] == [6, 3, 0, 0]


def test_bottomk_breaks_ties_by_position_and_works_per_row():
    d = torch.zeros(2, 5)
    d[1] = t(3.0, 2.0, 1.0, 0.0, -1.0)
    m = fl.bottomk_failures(d, 0.4)
    assert m[0].tolist() == [True, True, False, False, False]
    assert m[1].tolist() == [False, False, False, True, True]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=1, max_size=40), st.floats(0, 1))
def test_bottomk_property_every_flagged_margin_is_below_every_unflagged(deltas, frac):
    d = torch.tensor(deltas, dtype=torch.float64)
    m = fl.bottomk_failures(d, frac)
    assert int(m.sum()) == fl.bottomk_count(len(deltas), frac)
    if m.any() and (~m).any():
        assert d[m].max() <= d[~m].min()


def test_supervised_failures_text_rule_vs_algorithm_line_6():
    # pairs: (R(o+), R(o-)), labels y(o+) = +1 (non-toxic), y(o-) = -1 (toxic)
    r_plus, r_minus = t(1.0, -1.0, 1.0, 1.0), t(-1.0, -1.0, 2.0, 0.0)
    y_plus, y_minus = t(1, 1, 1, 1), t(-1, -1, -1, -1)
    text = fl.supervised_failures(r_plus, r_minus, y_plus, y_minus, rule="text")
    # pair 0: both right; 1: o+ wrong; 2: o- wrong (toxic scored +2); 3: o- on the boundary (0 -> <= 0)
    assert text.tolist() == [False, True, True, True]
    alg1 = fl.supervised_failures(r_plus, r_minus, y_plus, y_minus, rule="alg1")
    # Alg. 1 as printed flags y(o-)R(o-) >= 0: a correctly scored toxic o- (pair 0) becomes a failure
    assert alg1.tolist() == [True, True, False, True]
    with pytest.raises(ValueError, match="text, alg1"):
        fl.supervised_failures(r_plus, r_minus, y_plus, y_minus, rule="paper")


def test_supervised_failures_batch_mean_reference_ignores_reward_offset():
    r_plus, r_minus = t(1.0, 3.0), t(-1.0, -3.0)
    y_plus, y_minus = t(1, 1), t(-1, -1)
    a = fl.supervised_failures(r_plus, r_minus, y_plus, y_minus, reference="batch_mean")
    b = fl.supervised_failures(r_plus + 100, r_minus + 100, y_plus, y_minus, reference="batch_mean")
    assert a.tolist() == b.tolist() == [True, False]


def test_union_and_sampling():
    a, b = torch.tensor([True, False, False]), torch.tensor([False, False, True])
    assert fl.union_failures(a, b).tolist() == [True, False, True]
    f = torch.tensor([True, True, False, True])
    u = t(0.1, 0.6, 0.0, 0.4)
    assert fl.sample_failures(f, u, 1.0).tolist() == f.tolist()
    assert fl.sample_failures(f, u, 0.5).tolist() == [True, False, False, True]
    assert not fl.sample_failures(f, u, 0.0).any()


def test_schedules_follow_the_paper():
    # lambda: 10 at the start, exponential decay
    assert fl.lambda_schedule(10.0, 0.9, 0) == 10.0
    assert fl.lambda_schedule(10.0, 0.9, 2) == pytest.approx(8.1)
    # bottom-k: 20% -> 0% over 100 rounds, then held
    assert fl.bottomk_schedule(0.2, 0.0, 100, 0) == 0.2
    assert fl.bottomk_schedule(0.2, 0.0, 100, 50) == pytest.approx(0.1)
    assert fl.bottomk_schedule(0.2, 0.0, 100, 100) == 0.0
    assert fl.bottomk_schedule(0.2, 0.0, 100, 500) == 0.0
    assert fl.gamma_schedule(0.0, 0.8, 4, 1) == pytest.approx(0.2)
    assert fl.sampling_schedule(1.5, 1.5, 10, 3) == 1.0


def test_round_schedule_is_line_13_at_round_t():
    cfg = IRLConfig()
    s0, s50 = fl.round_schedule(cfg, 0), fl.round_schedule(cfg, 50)
    assert (s0.t, s0.lambda_t, s0.gamma_t, s0.bottomk_frac, s0.p_t) == (0, 10.0, 0.0, 0.2, 1.0)
    assert s50.lambda_t == pytest.approx(10.0 * 0.95 ** 50) and s50.bottomk_frac == pytest.approx(0.1)
    assert s50.gamma_t == pytest.approx(0.4)


def test_failure_set_is_lines_3_to_10_for_each_method_and_per_row():
    # r(o+), r(o-), Delta = r+ - r-; o+ non-toxic (y = +1), o- toxic (y = -1)
    r_plus, r_minus = t(1.0, -0.5, 1.0, 0.2), t(0.7, 0.5, -1.0, 0.1)
    delta = r_plus - r_minus                                     # 0.3, -1.0, 2.0, 0.1
    y_plus, y_minus = t(1, 1, 1, 1), t(-1, -1, -1, -1)
    u = t(0.1, 0.9, 0.2, 0.4)
    cfg = IRLConfig(bottomk_start=0.5)                           # k_0 = round(0.5 * 4) = 2
    sched = fl.round_schedule(cfg, 0)
    args = (delta, r_plus, r_minus, y_plus, y_minus, u, sched)
    # *_margin: the two smallest margins (pairs 1 and 3); p_0 = 1 keeps all of them
    f_t, s_t = fl.failure_set(cfg, False, *args)
    assert f_t.tolist() == [False, True, False, True] and s_t.tolist() == f_t.tolist()
    # *_gt (text rule): R(o+) <= 0 (pair 1) or -R(o-) <= 0 (pairs 0, 1, 3)
    f_t, _ = fl.failure_set(cfg, True, *args)
    assert f_t.tolist() == [True, True, False, True]
    # line 10 union with Delta <= gamma_0 = 0 changes nothing here; the gamma rule flags pair 1 only
    assert fl.failure_set(IRLConfig(gt_include_margin=True), True, *args)[0].tolist() == [True, True, False, True]
    gamma = IRLConfig(margin_rule="gamma")
    assert fl.failure_set(gamma, False, *args)[0].tolist() == [False, True, False, False]
    # S_t keeps a failure when its uniform is below p_t
    half = IRLConfig(bottomk_start=0.5, p_start=0.5, p_end=0.5)
    f_t, s_t = fl.failure_set(half, True, delta, r_plus, r_minus, y_plus, y_minus, u, fl.round_schedule(half, 0))
    assert s_t.tolist() == [True, False, False, True]
    # a stacked ensemble picks per row: row 0 supervised, row 1 margin
    rows = [x.expand(2, 4) for x in (delta, r_plus, r_minus, y_plus, y_minus, u)]
    f_t, _ = fl.failure_set(cfg, torch.tensor([[True], [False]]), *rows, sched)
    assert f_t.tolist() == [[True, True, False, True], [False, True, False, True]]


def test_training_with_an_empty_failure_set_runs_and_records_zero_failures():
    syn = make_synthetic(n_pairs=160, dim=6, seed=3)
    cfg = IRLConfig(head="linear", max_epochs=3, bottomk_start=0.0, bottomk_end=0.0)
    res = train_grid(syn.data, cfg, methods=["mm_fa_margin", "me_fa_margin"], seeds=[0])
    for run in res.runs:
        assert run.history["fail_frac"] == [0.0] * run.epochs_run
        assert all(np.isfinite(run.history["train_loss"]))


def test_training_records_the_curriculum():
    syn = make_synthetic(n_pairs=160, dim=6, seed=3)
    cfg = IRLConfig(head="linear", max_epochs=4, patience=10, bottomk_rounds=2, lambda_decay=0.5)
    run = train_grid(syn.data, cfg, methods=["me_fa_margin"], seeds=[0]).runs[0]
    assert run.history["lambda_t"] == [10.0, 5.0, 2.5, 1.25]
    assert run.history["bottomk_frac"] == pytest.approx([0.2, 0.1, 0.0, 0.0])
    # 20% of each minibatch (k = round(0.2 * b)) are failures in epoch 0, none once the fraction is 0
    assert 0.15 < run.history["fail_frac"][0] <= 0.25
    assert run.history["fail_frac"][2:] == [0.0, 0.0]
