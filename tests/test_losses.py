"""Eq. 1-3: hand-worked values, numerical stability, failure versions, App. B dominance. (The grid's
hand-written gradients of these losses are tested in test_irl_grid.py.)"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fairl_lib.irl import losses as ls

finite = st.floats(-50, 50, allow_nan=False, allow_infinity=False)


def t(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64)


def test_margin_loss_hand_worked():
    # Eq. 1 with M = 0.8: max(0, 0.8 - [1.0, 0.3, -0.5]) = [0, 0.5, 1.3] -> mean 0.6
    assert ls.margin_loss(t(1.0, 0.3, -0.5), 0.8).item() == pytest.approx(0.6)


def test_maxent_loss_hand_worked():
    # Eq. 2: -log(e^0 / (e^0 + 1)) = log 2; Delta = log 3 -> -log(3/4)
    assert ls.maxent_loss(t(0.0), 1.0).item() == pytest.approx(math.log(2))
    assert ls.maxent_loss(t(math.log(3)), 1.0).item() == pytest.approx(math.log(4 / 3))
    # tau = 2, Delta = 2 -> -log sigma(1) = log(1 + e^-1)
    assert ls.maxent_loss(t(2.0), 2.0).item() == pytest.approx(math.log1p(math.exp(-1)))


def test_maxent_loss_is_stable_for_huge_margins():
    out = ls.maxent_terms(torch.tensor([-1e4, 1e4], dtype=torch.float32), 1.0)
    assert torch.isfinite(out).all()
    assert out[0].item() == pytest.approx(1e4)
    assert out[1].item() == 0.0


@settings(max_examples=50, deadline=None)
@given(st.lists(finite, min_size=1, max_size=8), st.floats(0.1, 5.0))
def test_maxent_matches_the_softmax_formula_of_eq2(deltas, tau):
    d = torch.tensor(deltas, dtype=torch.float64)
    naive = -torch.log(torch.exp(d / tau) / (torch.exp(d / tau) + 1)).mean()
    assert ls.maxent_loss(d, tau).item() == pytest.approx(naive.item(), rel=1e-9, abs=1e-12)


@settings(max_examples=50, deadline=None)
@given(st.lists(finite, min_size=1, max_size=8), st.floats(1.0, 4.0))
def test_margin_and_upweight_failure_losses_dominate_base_losses_app_b(deltas, w_fail):
    """App. B: a larger margin or an up-weight w_fail >= 1 never lowers the loss."""
    d = torch.tensor(deltas, dtype=torch.float64)
    assert (ls.hinge_terms(d, 1.6) >= ls.hinge_terms(d, 0.8)).all()
    everything = torch.ones_like(d, dtype=torch.bool)
    assert ls.maxent_loss_fail(d, everything, 1.0, w_fail).item() >= ls.maxent_loss(d, 1.0).item() - 1e-12


@settings(max_examples=50, deadline=None)
@given(finite, st.floats(0.05, 0.99))
def test_sharper_temperature_dominates_only_for_misranked_pairs(delta, ratio):
    """App. B claims l_{tau_fail}(Delta) >= l_tau(Delta) for every finite Delta when tau_fail < tau.
    That holds for Delta <= 0 only: for a correctly ranked pair (Delta > 0) sharpening LOWERS the loss
    (e.g. Delta = 1: log(1 + e^-2) < log(1 + e^-1)). Documented in losses.py."""
    d = torch.tensor([delta], dtype=torch.float64)
    sharp, base = ls.maxent_terms(d, ratio).item(), ls.maxent_terms(d, 1.0).item()
    if delta <= 0:
        assert sharp >= base - 1e-12
    else:
        assert sharp <= base + 1e-12
    if delta == 1.0:
        assert sharp < base


def test_failure_loss_on_all_pairs_equals_base_loss_with_failure_settings():
    d = t(1.0, 0.3, -0.5, 2.0)
    allm = torch.ones(4, dtype=torch.bool)
    assert ls.margin_loss_fail(d, allm, 1.6).item() == pytest.approx(ls.margin_loss(d, 1.6).item())
    assert ls.maxent_loss_fail(d, allm, 0.5).item() == pytest.approx(ls.maxent_loss(d, 0.5).item())


def test_failure_loss_averages_over_the_subset_or_the_batch():
    d = t(1.0, 0.3, -0.5, 2.0)
    m = torch.tensor([False, True, True, False])
    # hinge at M_fail = 1.6 on {0.3, -0.5}: [1.3, 2.1]
    assert ls.margin_loss_fail(d, m, 1.6).item() == pytest.approx(1.7)
    assert ls.margin_loss_fail(d, m, 1.6, reduction="batch").item() == pytest.approx(3.4 / 4)
    assert ls.margin_loss_fail(d, m, 1.6, w_fail=2.0).item() == pytest.approx(3.4)


def test_empty_failure_set_gives_zero_loss_and_zero_gradient():
    d = t(1.0, -3.0).requires_grad_(True)
    none = torch.zeros(2, dtype=torch.bool)
    for loss in (ls.margin_loss_fail(d, none), ls.maxent_loss_fail(d, none)):
        assert loss.item() == 0.0
        (g,) = torch.autograd.grad(loss, d)
        assert torch.all(g == 0)


def test_losses_reduce_the_last_axis_so_ensembles_match_rows():
    d = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    mask = d < 0
    batched = ls.margin_loss_fail(d, mask, 1.6)
    rows = torch.stack([ls.margin_loss_fail(d[i], mask[i], 1.6) for i in range(3)])
    assert torch.allclose(batched, rows)
    assert torch.allclose(ls.maxent_loss(d, 0.7), torch.stack([ls.maxent_loss(r, 0.7) for r in d]))


def test_eq3_objective_and_penalty_hand_worked():
    w1 = torch.tensor([[1.0, 2.0]])
    w2 = torch.tensor([2.0])
    pen = ls.failure_weight_penalty([w1, w2])            # 1 + 4 + 4 = 9
    assert pen.item() == 9.0
    # L = 1 + 10 * 0.5 + 10 / 2 * 9 = 51
    assert ls.fa_objective(torch.tensor(1.0), torch.tensor(0.5), pen, 10.0).item() == 51.0


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="mm, me"):
        ls.base_loss("svm", t(0.0))
    with pytest.raises(ValueError, match="subset, batch"):
        ls.masked_mean(t(0.0), torch.tensor([True]), "sum")
