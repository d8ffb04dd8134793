"""Why Eq. 3 as printed collapses the failure path R_F (IRLConfig's docstring), checked numerically.

- MLP failure head at zero weights (any biases): every margin Delta_F has exactly zero gradient, so
  L_fail pushes nothing and w_F = 0 is a stationary point of Eq. 3 for the failure path;
- near it the failure path's objective lambda_t (L_fail + c/2 ||w_F||^2) changes by about
  lambda_t a^2 (c - ||v||) along the best direction (v = the gradient of L_fail w.r.t. a linear head's
  weights): a minimum when ||v|| < c, whatever lambda_t;
- linear failure head at zero weights: L_fail's gradient is v, not zero.
"""
from __future__ import annotations

import pytest
import torch

from fairl_lib.irl import IRLConfig, fairl, method_spec
from fairl_lib.irl import losses as ls

DIM, HIDDEN, B = 6, 5, 12


@pytest.fixture(scope="module")
def batch():
    gen = torch.Generator().manual_seed(0)
    xb = torch.randn(B, 2, DIM, generator=gen, dtype=torch.float64)          # [h(o+), h(o-)] per pair
    return xb / xb.norm(dim=-1, keepdim=True)                               # unit norm, like MiniLM


def model_at_zero(head: str, one_live_unit: bool = False) -> fairl.DualPathReward:
    """An ME FA-IRL reward whose failure path has zero weights and nonzero biases (base path as drawn)."""
    cfg = IRLConfig(head="mlp", fail_head=head, hidden=HIDDEN)
    model = fairl.DualPathReward(DIM, cfg, 0, method_spec("me_fa_margin"), torch.float64)
    theta = model.failure.theta
    with torch.no_grad():
        for name in model.failure.weight_names:
            theta[name].zero_()
        if head == "mlp":
            theta["b1"].copy_(torch.linspace(-0.3, 0.4, HIDDEN, dtype=torch.float64))   # both signs
            if one_live_unit:                             # unit 0 alive (b1 > 0), the others dead
                theta["b1"].copy_(torch.full((HIDDEN,), -0.5, dtype=torch.float64))
                theta["b1"][0] = 0.5
        theta["b2" if head == "mlp" else "b"].fill_(0.2)
    return model


def failure_margins(model: fairl.DualPathReward, xb: torch.Tensor) -> torch.Tensor:
    r_f = model.failure(xb)
    return ls.reward_margin(r_f[:, 0], r_f[:, 1])


def failure_objective(model: fairl.DualPathReward, xb: torch.Tensor, c: float, lambda_t: float = 10.0):
    """What Eq. 3 minimises over the failure path (route_gradients: L_base does not reach it):
    lambda_t L_fail(S_t) + c lambda_t / 2 ||w_F||^2, with S_t = every pair and a fixed base margin."""
    d_d = ls.reward_margin(*model.base(xb).detach().unbind(-1))
    l_fail = ls.failure_loss("me", d_d + failure_margins(model, xb), torch.ones(B, dtype=torch.bool),
                             tau_fail=0.5)
    return lambda_t * l_fail + 0.5 * c * lambda_t * model.failure.penalty()


def test_mlp_failure_head_at_zero_weights_has_exactly_zero_margin_gradients(batch):
    model = model_at_zero("mlp")
    params = list(model.failure.parameters())
    for i in range(B):                                    # d Delta_F,i / d theta_F, pair by pair
        grads = torch.autograd.grad(failure_margins(model, batch)[i], params)
        assert all(torch.equal(g, torch.zeros_like(g)) for g in grads), i
    # so Eq. 3 gives the failure path nothing but the penalty's pull, which is 0 at w_F = 0
    grads = torch.autograd.grad(failure_objective(model, batch, c=1.0), params)
    assert max(g.abs().max().item() for g in grads) <= 1e-15
    # R_F is the constant b2 there
    assert torch.equal(model.failure(batch), torch.full((B, 2), 0.2, dtype=torch.float64))


def test_linear_failure_head_at_zero_weights_is_pushed_by_l_fail(batch):
    model = model_at_zero("linear")
    g_w = torch.autograd.grad(failure_margins(model, batch)[0], model.failure.theta["w"])[0]
    torch.testing.assert_close(g_w, batch[0, 0] - batch[0, 1], rtol=0, atol=1e-15)   # h(o+) - h(o-)
    g_w = torch.autograd.grad(failure_objective(model, batch, c=1.0), model.failure.theta["w"])[0]
    assert g_w.norm() > 0.05


@pytest.mark.parametrize("lambda_t", [10.0, 0.1])
def test_zero_mlp_weights_are_a_minimum_unless_the_penalty_is_weaker_than_l_fails_pull(batch, lambda_t):
    lin = model_at_zero("linear")
    v = torch.autograd.grad(failure_objective(lin, batch, c=0.0, lambda_t=1.0), lin.failure.theta["w"])[0]
    norm_v = v.norm().item()                              # ||grad of L_fail w.r.t. a linear head||
    assert 0.05 < norm_v < 1.0
    a = 1e-3
    for c in (1.0, norm_v / 2):
        model = model_at_zero("mlp", one_live_unit=True)
        f0 = failure_objective(model, batch, c, lambda_t).item()
        with torch.no_grad():                             # along the steepest direction of the bilinear term
            model.failure.theta["w1"][:, 0] = -a * v / norm_v
            model.failure.theta["w2"][0] = a
        change = failure_objective(model, batch, c, lambda_t).item() - f0
        assert change == pytest.approx(lambda_t * a * a * (c - norm_v), rel=1e-2)
        assert (change > 0) == (c > norm_v)               # c = 1: a minimum (collapse); c < ||v||: a saddle
