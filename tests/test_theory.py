"""Theorem 1 / Corollary 1 / App. B checks on the 2D toy (fairl_lib.irl.theory)."""
from __future__ import annotations

import dataclasses

import matplotlib
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fairl_lib.irl import theory as th

matplotlib.use("Agg")
FAST = settings(max_examples=40, deadline=None)
N_VERTICES = 360


# ----------------------------------------------------------------------------- strategies
@st.composite
def constraint_sets(draw, min_n=1, max_n=6):
    """Directions d_i = norm * (cos a, sin a), norms away from 0 (no degenerate pairs)."""
    n = draw(st.integers(min_n, max_n))
    angles = draw(st.lists(st.floats(-np.pi, np.pi), min_size=n, max_size=n))
    norms = draw(st.lists(st.floats(0.2, 2.0), min_size=n, max_size=n))
    return np.array([[r * np.cos(a), r * np.sin(a)] for a, r in zip(angles, norms)])


@st.composite
def toy_problems(draw):
    """A constraint set consistent with some true direction, failures, M >= 0, M_fail > M, radius."""
    true_angle = draw(st.floats(-np.pi, np.pi))
    D = draw(constraint_sets(min_n=2, max_n=6))
    u = th.unit(true_angle)
    D = np.where((D @ u > 0)[:, None], D, -D)  # flip so every pair agrees with theta*
    assume(np.all(np.abs(D @ u) > 1e-3))
    failures = np.array(sorted(draw(st.sets(st.integers(0, len(D) - 1), min_size=1))))
    margin = draw(st.sampled_from([0.0, 0.1, 0.3]))
    margin_fail = margin + draw(st.floats(0.01, 1.0))
    radius = draw(st.floats(0.5, 3.0))
    return th.ToyProblem(D, failures, margin, margin_fail, radius, u)


def random_thetas(seed: int, radius: float, n: int = 2000) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-radius, radius, size=(n, 2))


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize("bad, match", [
    ({"margin": 0.5, "margin_fail": 0.5}, "M_fail > M"),
    ({"w_fail": 1.0}, "w_fail must be > 1"),
    ({"tau": 1.0, "tau_fail": 1.0}, "tau_fail must be in"),
    ({"failure_rule": "worst"}, "valid: boundary, margin, random"),
    ({"n_failures": 9, "n_constraints": 8}, "n_failures"),
    ({"margin": -0.1}, "margin M must be >= 0"),
])
def test_config_validation(bad, match):
    with pytest.raises(ValueError, match=match):
        th.TheoryConfig(**bad)


def test_config_frozen_and_defaults_valid():
    cfg = th.TheoryConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.margin = 1.0  # frozen


# ----------------------------------------------------------------------------- sampling, failures
def test_sampled_constraints_agree_with_true_reward():
    D = th.sample_constraints(np.random.default_rng(0), 50, theta_true_angle=1.0, d_std=2.0)
    assert D.shape == (50, 2)
    assert np.all(D @ th.unit(1.0) > 0)


def test_boundary_failures_are_the_support_vectors():
    D = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    np.testing.assert_allclose(th.baseline_direction(D), th.unit(np.pi / 4), atol=1e-12)
    assert th.select_failures(D, 2, "boundary").tolist() == [0, 1]
    assert th.select_failures(D, 1, "margin").tolist() in ([0], [1])


# ----------------------------------------------------------------------------- exact arcs
def test_hand_worked_quarter_arc():
    D = np.array([[1.0, 0.0], [0.0, 1.0]])
    arc = th.feasible_arc(D)
    assert th.arc_width(arc) == pytest.approx(np.pi / 2, abs=1e-15)
    assert arc[0] == pytest.approx(0.0, abs=1e-15)
    # With margin m in the ball of radius r: cos a >= m/r and sin a >= m/r, width pi/2 - 2 asin(m/r).
    assert th.arc_width(th.feasible_arc(D, 0.5, radius=1.0)) == pytest.approx(np.pi / 6, abs=1e-12)
    assert th.feasible_arc(D, 0.8, radius=1.0) is None  # cos a, sin a >= 0.8 is impossible
    # The quarter disk: area pi r^2 / 4 (inscribed polygon: relative error ~ (2 pi / n)^2 / 6).
    F = th.feasible_set(D, 0.0, radius=2.0, n_vertices=720)
    assert th.polygon_area(F) == pytest.approx(np.pi, rel=1e-4)
    assert th.set_diameter(F) == pytest.approx(2 * np.sqrt(2), rel=1e-9)


def test_opposite_constraints_leave_an_empty_arc():
    D = np.array([[1.0, 0.2], [-1.0, 0.2], [0.0, -1.0]])
    assert th.feasible_arc(D) is None
    assert th.arc_width(None) == 0.0


@FAST
@given(D=constraint_sets(), margin=st.sampled_from([0.0, 0.2, 0.6]), radius=st.floats(0.5, 2.0))
def test_arc_matches_brute_force_angles(D, margin, radius):
    arc = th.feasible_arc(D, margin, radius)
    angles = np.linspace(-np.pi, np.pi, 20000, endpoint=False)
    slack = np.column_stack([np.cos(angles), np.sin(angles)]) @ D.T - margin / radius
    ok_strict, ok_loose = np.all(slack > 1e-9, axis=1), np.all(slack >= -1e-9, axis=1)
    assert abs(th.arc_width(arc) - ok_loose.mean() * 2 * np.pi) <= 3 * 2 * np.pi / len(angles)
    inside = th.angle_in_arc(angles, arc)
    assert np.all(ok_loose[inside])  # no direction on the arc violates a constraint
    assert np.all(inside[ok_strict])  # no feasible direction is missed


@FAST
@given(D=constraint_sets(min_n=2, max_n=7), margin=st.sampled_from([0.0, 0.3]))
def test_arc_width_monotone_under_adding_constraints(D, margin):
    arcs = [th.feasible_arc(D[:k], margin) for k in range(1, len(D) + 1)]
    assert np.all(np.diff([th.arc_width(a) for a in arcs]) <= th.TOL)
    angles = np.random.default_rng(0).uniform(-np.pi, np.pi, 2000)
    inside = np.array([th.angle_in_arc(angles, a) for a in arcs])
    assert not np.any(inside[1:] & ~inside[:-1])  # each arc lies within the previous one


# ----------------------------------------------------------------------------- Theorem 1, max-margin
@FAST
@given(p=toy_problems())
def test_theorem1_max_margin_inclusion(p):
    """F_FA is contained in F (membership), and no Corollary 1 measure grows."""
    thetas = np.vstack([random_thetas(0, p.radius), th.theta_grid(p.radius, 41)[0]])
    in_base = th.feasible_mask(thetas, p.D, p.margins_base, p.radius)
    in_fa = th.feasible_mask(thetas, p.D, p.margins_fa, p.radius)
    assert not np.any(in_fa & ~in_base)
    res = th.ambiguity(p, N_VERTICES)
    for m in th.MEASURES:
        assert res[f"{m}_fa"] <= res[f"{m}_base"] + th.TOL


@FAST
@given(p=toy_problems())
def test_theorem1_strict_iff_a_failure_binds(p):
    """Strictly smaller area when some point of F violates a failure constraint; equal otherwise."""
    F = th.feasible_set(p.D, p.margins_base, p.radius, N_VERTICES)
    assume(len(F) >= 3)
    slack = min(float(np.min(F @ p.D[f])) - p.margin_fail for f in p.failures)
    assume(abs(slack) > 1e-3)  # clear cases only
    res = th.ambiguity(p, N_VERTICES)
    if slack < 0:
        assert res["binds"] and res["area_fa"] < res["area_base"]
    else:
        assert not res["binds"]
        for m in ("diameter", "area"):
            assert res[f"{m}_fa"] == res[f"{m}_base"]
        assert res["arc_width_fa"] == pytest.approx(res["arc_width_base"], abs=1e-12)


def test_non_binding_failure_leaves_F_unchanged():
    """Theorem 1 (Sec. 4.4) claims strict inclusion for ANY failure; a non-binding one changes nothing."""
    D = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    p = th.ToyProblem(D, np.array([2]), 0.2, 0.3, 1.0, th.unit(np.pi / 4))  # min_F theta.d3 = 0.4
    res = th.ambiguity(p, N_VERTICES)
    assert not res["binds"]
    assert res["area_fa"] == res["area_base"] and res["arc_width_fa"] == res["arc_width_base"]


def test_binding_failure_can_leave_width_and_diameter_unchanged():
    """Strict inclusion makes the area smaller, not every measure (Corollary 1 overreaches)."""
    D = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    p = th.ToyProblem(D, np.array([2]), 0.0, 0.1, 1.0, th.unit(np.pi / 4))  # cuts a corner at 0
    res = th.ambiguity(p, N_VERTICES)
    assert res["binds"] and res["area_fa"] < res["area_base"]
    assert res["arc_width_fa"] == pytest.approx(res["arc_width_base"], abs=1e-12)
    assert res["diameter_fa"] == pytest.approx(res["diameter_base"], abs=1e-12)


def test_ambiguity_over_draws_never_larger_and_reproducible():
    cfg = th.TheoryConfig(n_draws=25, n_vertices=N_VERTICES)
    res = th.ambiguity_over_draws(cfg)
    summary = th.summarize_ambiguity(res)
    for m in th.MEASURES:
        assert summary[f"{m}_frac_not_larger"] == 1.0
    assert summary["area_frac_strictly_smaller"] == summary["frac_binds"] == 1.0  # M = 0: 0 is cut
    again = th.ambiguity_over_draws(cfg)
    assert all(np.array_equal(res[k], again[k]) for k in res)
    one = th.ambiguity(th.draw_problem(cfg, 7), N_VERTICES)
    assert one["area_fa"] == res["area_fa"][7]
    other = th.ambiguity_over_draws(cfg, np.random.default_rng(1))
    assert not np.array_equal(res["area_base"], other["area_base"])


# ----------------------------------------------------------------------------- App. B, max-entropy
def visible(diff: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Where a difference of losses is large enough to survive float rounding of the sums."""
    return np.abs(diff) > 1e-9 * (1 + base)


@FAST
@given(p=toy_problems(), w_fail=st.floats(1.01, 10.0), tau=st.floats(0.1, 3.0))
def test_upweighting_dominates_pointwise_and_sublevel_sets_nest(p, w_fail, tau):
    thetas = random_thetas(1, 3.0, 500)
    base = th.loss_base(thetas, p.D, tau)
    fa = th.loss_fa(thetas, p.D, p.failures, tau, "upweight", w_fail=w_fail)
    fail_loss = th.logistic_loss(thetas @ p.D[p.failures].T, tau).sum(axis=1)
    # App. B: L_FA - L_base = (w_fail - 1) sum_f l_tau(Delta_f), and l_tau > 0 everywhere ...
    assert np.all(fail_loss > 0)
    np.testing.assert_allclose(fa - base, (w_fail - 1) * fail_loss, rtol=1e-9, atol=1e-9 * base.max())
    # ... so L_FA >= L_base, strictly (wherever the float sums can show it).
    assert np.all(fa >= base)
    strict = visible((w_fail - 1) * fail_loss, base)
    assert np.all(fa[strict] > base[strict])
    for eta in np.quantile(base, [0.1, 0.5, 0.9]):
        assert not np.any((fa <= eta) & (base > eta))


@FAST
@given(p=toy_problems(), tau=st.floats(0.2, 3.0), ratio=st.floats(0.1, 0.95))
def test_sharpening_dominates_only_where_failures_are_misranked(p, tau, ratio):
    """App. B claims l_{tau_fail} >= l_tau for all Delta; true only for Delta <= 0."""
    tau_fail = ratio * tau
    thetas = random_thetas(2, 3.0, 500)
    base = th.loss_base(thetas, p.D, tau)
    fa = th.loss_fa(thetas, p.D, p.failures, tau, "sharpen", tau_fail=tau_fail)
    delta_f = thetas @ p.D[p.failures].T
    per_pair = th.logistic_loss(delta_f, tau_fail) - th.logistic_loss(delta_f, tau)
    assert np.all(per_pair[delta_f <= 0] >= 0) and np.all(per_pair[delta_f > 0] < 0)
    misranked = np.all(delta_f <= 0, axis=1)
    assert np.all(fa[misranked] >= base[misranked] - 1e-9 * base[misranked])
    strict = misranked & visible(per_pair.sum(axis=1), base)
    assert np.all(fa[strict] > base[strict])
    ranked = np.all(delta_f > 0, axis=1) & visible(per_pair.sum(axis=1), base)
    assert np.all(fa[ranked] < base[ranked])  # the paper's pointwise dominance fails here


def test_sharpening_breaks_sublevel_inclusion():
    """Counterexample to F_FA(eta) <= F(eta) for sharpening: take eta = L_FA(theta) at a theta
    where the failure pair is ranked correctly."""
    D = np.array([[1.0, 0.0], [0.0, 1.0]])
    theta = np.array([[1.0, 1.0]])
    base = th.loss_base(theta, D, tau=1.0)[0]
    fa = th.loss_fa(theta, D, [0], tau=1.0, variant="sharpen", tau_fail=0.5)[0]
    assert fa < base  # l_0.5(1) = 0.127 < l_1(1) = 0.313
    assert th.logistic_loss(1.0, 0.5) == pytest.approx(np.log1p(np.exp(-2.0)))
    eta = fa
    assert fa <= eta < base  # theta is in {L_FA <= eta} but not in {L_base <= eta}


def test_logistic_loss_is_stable():
    assert np.isfinite(th.logistic_loss(-1e6, 0.01)) and th.logistic_loss(1e6, 0.01) == 0.0


def test_sublevel_areas_table():
    cfg = th.TheoryConfig(grid_size=81)
    tab = th.sublevel_areas(th.draw_problem(cfg, 0), cfg)
    up = tab["variant"] == "upweight"
    assert np.all(tab["fa_subset_base"][up]) and np.all(tab["area_fa"][up] <= tab["area_base"][up])
    assert len(tab["eta"]) == 2 * len(cfg.eta_fracs)


# ----------------------------------------------------------------------------- plots, widget
def test_plots_return_figures():
    import matplotlib.pyplot as plt

    cfg = th.TheoryConfig(n_draws=10, grid_size=41, n_vertices=N_VERTICES)
    p = th.draw_problem(cfg, 0)
    figs = [th.plot_feasible_cone(p, grid_size=15), th.plot_ambiguity(th.ambiguity_over_draws(cfg)),
            th.plot_sublevel_sets(p, cfg)]
    assert all(isinstance(f, matplotlib.figure.Figure) for f in figs)
    for f in figs:
        plt.close(f)


def test_interactive_cone_does_not_fail_headless():
    th.interactive_cone(th.TheoryConfig(n_vertices=N_VERTICES))
