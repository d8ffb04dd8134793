"""Hyper-parameters of IRL / FA-IRL training (Sec. 4-5, Algorithm 1), shared by both trainers."""
from __future__ import annotations

from dataclasses import dataclass

from fairl_lib.config import section, speed_knob
from fairl_lib.irl import failures, losses
from fairl_lib.irl.reward import check_head


@section("irl")
@dataclass(frozen=True)
class IRLConfig:
    """Hyper-parameters of IRL / FA-IRL training. Defaults are the paper's values where it gives one.

    Why Eq. 3 as printed collapses the failure path. The penalty lambda_t/2 ||w_F||^2 shares lambda_t
    with lambda_t L_fail, so lambda_0 and its decay scale both terms alike and cancel out of the
    balance between them; only ``penalty_scale`` (c) moves it. L_fail depends on R_F only through the margins
    Delta_F = R_F(o+) - R_F(o-), and L_base does not train R_F (``route_gradients``). Then:

    - two-layer MLP failure head, R_F = w2^T relu(W1^T h + b1) + b2: at w_F = (W1, w2) = 0 (any
      biases) R_F is the constant b2, and the gradient of R_F w.r.t. each layer goes through the
      other layer's weights: dR_F/dW1 = h (w2 * relu') is 0 at w2 = 0, dR_F/dw2 = relu(W1^T h + b1)
      is relu(b1) at W1 = 0, the same for o+ and o-. So every margin Delta_F has zero gradient:
      L_fail pushes nothing while the L2 term pulls the weights to 0. w_F = 0 is a stationary point, and near it L_fail is bilinear
      in (W1, w2) while the penalty is quadratic: to second order the objective of one hidden unit is
      lambda_t (-a b ||v|| + c (a^2 + b^2) / 2), with v the gradient of L_fail w.r.t. a linear
      head's weights: w_F = 0 is a local minimum (the collapse) unless ||v|| > c, and lambda_t has
      no say in it. tests/test_irl_failure_head.py checks the zero gradients.
    - linear failure head (Sec. 4.1, R_F = theta_F^T h + b_F): L_fail has a nonzero gradient at
      theta_F = 0, but the penalty balances it at theta_F = -grad_theta L_fail / c, as small as
      that gradient: R_F stays tiny beside R_D, which L_base scales to the margins.

    Hence ``penalty_scale`` (c < 1 lets the failure path act) and ``fail_head``.

    Attributes:
        head: reward head per path, ``"mlp"`` (two-layer MLP, Sec. 5) or ``"linear"`` (Sec. 4.1).
        fail_head: head of the failure path R_F, ``""`` (the same as ``head``), ``"linear"`` or
            ``"mlp"``. The paper is ambiguous: Sec. 4.1 writes R_F(o) = theta_F^T h(o) + b_F (linear),
            Sec. 5 says the reward model is a two-layer MLP; a linear failure head on an MLP base
            path is Sec. 4.1's correction term on Sec. 5's reward.
        hidden: hidden width of the MLP head (of both paths when both are MLPs). Not given in the
            paper; 32 (12k weights per path on 384-d MiniLM embeddings) is small for 20k pairs and
            keeps the 30-run grid fast (cost is linear in it, see benchmarks/README.md).
        margin: M of Eq. 1 (paper: 0.8).
        margin_fail: M_fail > M for failure pairs (Sec. 4.2; value not given, default 2M).
        tau: temperature of Eq. 2 (paper: 1.0).
        tau_fail: tau_fail < tau for failure pairs (Sec. 4.2; value not given, default tau/2).
        w_fail: extra up-weight of the failure loss (App. B, w_fail > 1 = up-weighting; 1.0 = off).
        fail_reduction: L_fail averages over S_t (``"subset"``) or divides by B (``"batch"``).
        route_gradients: L_base trains only R_D and L_fail only R_F (Sec. 4.1), else both paths.
        lambda0: initial failure weight lambda_0 of Eq. 3 (paper: 10.0).
        lambda_decay: per-epoch factor of the exponential decay lambda_t = lambda0 * decay^t.
        penalty_scale: c in c * lambda_t/2 ||w_F||^2 (Eq. 3 as printed: c = 1). Eq. 3 ties the L2 term
            to the same lambda_t as L_fail, so with lambda0 = 10 and an MLP failure head the penalty
            can dominate and shrink R_F to almost nothing (measured in notebook 04, "failure path
            share"); c < 1 lets the failure path act. Kept at the paper's 1 in every profile.
        margin_rule: how *_margin runs pick failures: ``"bottomk"`` (Sec. 5 curriculum) or
            ``"gamma"`` (Delta <= gamma_t, Alg. 1 line 4).
        gamma_start: gamma_t at epoch 0 (0 = only pairs the reward gets wrong).
        gamma_end: gamma_t after ``gamma_rounds`` (default M: near-ties inside the margin).
        gamma_rounds: epochs of the linear gamma anneal.
        bottomk_start: fraction of a minibatch flagged by bottom-k at epoch 0 (paper: 20%).
        bottomk_end: fraction after ``bottomk_rounds`` (paper: 0%).
        bottomk_rounds: epochs of the bottom-k curriculum (paper: 100 rounds).
        p_start: sampling rate p_t of S_t from F_t at epoch 0 (paper: not given; 1 = keep all).
        p_end: p_t after ``p_rounds``.
        p_rounds: epochs of the linear p_t schedule.
        sup_rule: supervised-failure rule, ``"text"`` (y(o)R(o) <= 0 for both outputs, Sec. 4.3) or
            ``"alg1"`` (Alg. 1 line 6 as printed: y(o-)R(o-) >= 0); see failures.supervised_failures.
        sup_reference: compare R(o) with ``"zero"`` (literal) or the ``"batch_mean"`` reward.
        gt_include_margin: *_gt runs also flag Delta <= gamma_t (Alg. 1 line 10 union); default off,
            so *_gt = ground-truth failures only.
        mining: ``"batch"`` finds failures in each minibatch (Alg. 1 lines 2-4) or ``"epoch"`` once per
            epoch on all training pairs (bottom-k then ranks the whole training set).
        lr: Adam learning rate (paper: 1e-3).
        adam_beta1: Adam beta_1 (torch default).
        adam_beta2: Adam beta_2 (torch default).
        adam_eps: Adam epsilon (torch default).
        batch_size: pairs per minibatch B (paper: 32).
        max_epochs: epoch cap (paper: up to 800).
        patience: epochs without validation improvement before a run stops (paper: "early stopping").
        min_delta: a validation loss must drop by more than this to count as an improvement.
        val_fraction: share of the pairs held out for early stopping.
        split_seed: seed of the train/validation split (shared by all runs).
        n_seeds: independent runs per method (Table 1 reports mean +- std over seeds; paper: 5).
        eval_chunk: pairs per chunk in full-dataset evaluation: a memory knob, no effect on results (tested),
            so no stage key holds it (:func:`fairl_lib.config.speed_knob`).
    """

    head: str = "mlp"
    fail_head: str = ""
    hidden: int = 32
    margin: float = 0.8
    margin_fail: float = 1.6
    tau: float = 1.0
    tau_fail: float = 0.5
    w_fail: float = 1.0
    fail_reduction: str = "subset"
    route_gradients: bool = True
    lambda0: float = 10.0
    lambda_decay: float = 0.95
    penalty_scale: float = 1.0
    margin_rule: str = "bottomk"
    gamma_start: float = 0.0
    gamma_end: float = 0.8
    gamma_rounds: int = 100
    bottomk_start: float = 0.2
    bottomk_end: float = 0.0
    bottomk_rounds: int = 100
    p_start: float = 1.0
    p_end: float = 1.0
    p_rounds: int = 100
    sup_rule: str = "text"
    sup_reference: str = "zero"
    gt_include_margin: bool = False
    mining: str = "batch"
    lr: float = 1e-3
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    batch_size: int = 32
    max_epochs: int = 800
    patience: int = 10
    min_delta: float = 0.0
    val_fraction: float = 0.1
    split_seed: int = 0
    n_seeds: int = 5
    eval_chunk: int = speed_knob(2048)

    def __post_init__(self) -> None:
        check_head(self.head)
        if self.fail_head:
            check_head(self.fail_head)
        choices = {"margin_rule": ("bottomk", "gamma"), "sup_rule": failures.SUP_RULES,
                   "sup_reference": failures.SUP_REFERENCES, "mining": ("batch", "epoch"),
                   "fail_reduction": losses.FAIL_REDUCTIONS}
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"IRLConfig.{name}={getattr(self, name)!r} is not valid; "
                                 f"choose one of {valid}")
        if self.batch_size < 1 or self.max_epochs < 1 or self.hidden < 1 or self.patience < 1:
            raise ValueError("IRLConfig: batch_size, max_epochs, hidden and patience must be >= 1")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"IRLConfig.val_fraction must be in [0, 1); got {self.val_fraction}")

    def path_head(self, role: str) -> str:
        """The head of path ``role``: ``head`` for ``"base"``, ``fail_head`` (default ``head``) for ``"failure"``."""
        if role not in ("base", "failure"):
            raise ValueError(f"Unknown path role {role!r}; use 'base' or 'failure'")
        return (self.fail_head or self.head) if role == "failure" else self.head
