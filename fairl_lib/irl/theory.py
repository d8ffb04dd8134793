"""Theorem 1 toy: failure constraints shrink the feasible reward set (paper Sec. 4.4, Fig. 2, App. B).

A linear reward R_theta(o) = theta . h(o) in two dimensions. Each preference pair (o+, o-) gives a
direction d_i = h(o+) - h(o-) and a margin constraint (Eq. 1 with zero hinge loss)

    Delta_i(theta) = theta . d_i >= M.

Failure pairs (near-ties of the standard solution, Sec. 4.3) get the stricter margin M_fail > M.
This module computes, exactly where it can, the feasible sets

    F    = {theta : |theta| <= r,  theta . d_i >= M  for all i}
    F_FA = {theta in F :           theta . d_f >= M_fail  for failures f}

and the ambiguity measures of Corollary 1 (angular width, diameter, area), plus the max-entropy side
of App. B (sublevel sets of L_base and L_FA). Plot helpers return figures; they never save.

What the paper leaves open, and what this toy does (the notebook prose reuses these notes):

1. Two margin conventions. Sec. 4.4 writes standard constraints ``theta . d >= 0`` and failure
   constraints ``theta . d_f >= M`` (Fig. 2 caption: ``w^T d_f >= M``, with ``w`` for ``theta``);
   App. B writes ``Delta_i >= M`` and ``Delta_f >= M_fail > M``. Both are ``TheoryConfig(margin=M,
   margin_fail=M_fail)``: Sec. 4.4 is ``margin=0`` with its ``M`` playing the role of ``margin_fail``.
   Default: ``margin=0`` (Sec. 4.4 / Fig. 2).
2. A norm ball is needed. Rewards are scale-free: theta and c*theta rank every pair alike, and any
   positive margin is met by scaling theta up. Without a bound on |theta|, ``theta . d_f >= M_fail``
   only removes a bounded piece near the origin from the cone F, so the set of reward *directions*
   does not shrink at all and area/diameter are infinite. The paper's Eq. 3 has an L2 penalty on the
   failure head; here we intersect with the ball |theta| <= ``radius`` (explicit, configurable).
3. "Strict inclusion for ANY non-empty failure set" (Theorem 1, Sec. 4.4) is false as stated: a
   failure constraint whose half-plane already contains F (it does not *bind*) leaves F unchanged.
   App. B says "whenever at least one nontrivial failure exists" and its proof says strictness holds
   when some x_f "has nonzero projection" -- also not enough; the corollary's "tightens a supported
   face" is the right condition. Here: a failure *binds* when some point of F violates it
   (``min_{theta in F} theta . d_f < M_fail``, see :func:`binds`). F_FA is a strict subset of F iff
   some failure binds.
4. Strict set inclusion does not make every measure strictly smaller (Corollary 1, main text). Area
   strictly drops iff a failure binds (F has an interior); diameter and angular width may stay equal
   when the removed piece holds no extreme point (e.g. with margin=0 a failure can cut off only a
   neighbourhood of the origin). "Variance across seeds" and "distance to a ground-truth reward" are
   not monotone under inclusion in general, so Corollary 1's list overreaches; this toy also reports
   how often F_FA still contains the true reward direction (failures can prune the truth).
5. Sharpening (App. B, max-entropy). The proof says "l_tau(Delta) decreases as tau increases", so
   l_{tau_fail} >= l_tau. That holds only for Delta <= 0 (misranked or tied pairs). For Delta > 0 a
   lower temperature gives a *smaller* loss (l_tau(1)=0.313 at tau=1, 0.127 at tau=0.5), so
   L_FA >= L_base fails wherever a failure pair is ranked correctly and the sublevel inclusion
   F_FA(eta) <= F(eta) fails for some eta. Up-weighting (w_fail > 1) is fine: l_tau > 0 everywhere,
   so L_FA > L_base strictly at every theta. See :func:`loss_fa` and :func:`sublevel_areas`.
6. Which pairs are failures. Sec. 4.3 / Alg. 1 line 4 flag pairs with Delta_i <= gamma_t under the
   current reward; the toy has no training loop, so failures are the ``n_failures`` pairs with the
   smallest margin under the standard max-margin solution (``failure_rule="boundary"``: angular
   margin, i.e. closest to the boundary of the cone -- the support vectors come first; ``"margin"``:
   raw margin Delta_i as in Alg. 1; ``"random"``: a uniform subset, for contrast: many do not bind).
   The sampled pairs are all consistent with a true reward, so there are no misclassified pairs.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from fairl_lib.config import section

FAILURE_RULES = ("boundary", "margin", "random")
ME_VARIANTS = ("upweight", "sharpen")
TOL = 1e-12  # measures closer than this count as equal


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------
@section("theory")
@dataclass(frozen=True)
class TheoryConfig:
    """Parameters of the Theorem 1 toy (profile section ``[theory]``).

    Attributes:
        n_constraints: number of random preference constraints d_i per draw.
        n_failures: how many of them are failure pairs (1 <= n_failures <= n_constraints).
        margin: standard margin M (Eq. 1; Sec. 4.4 uses 0, App. B uses M > 0). Must be >= 0.
        margin_fail: failure margin M_fail > margin (Alg. 1 line 11; "M" of Sec. 4.4 / Fig. 2).
        radius: r of the norm ball |theta| <= r that bounds the feasible sets (see note 2 above).
        n_draws: Monte Carlo draws of constraint sets for the ambiguity distributions.
        theta_true_angle: angle (radians) of the true reward direction theta*; every d_i satisfies
            theta* . d_i > 0, so the cone F is never empty.
        d_mean: the Gaussian for d_i is centred at d_mean * theta* (unit theta*).
        d_std: isotropic standard deviation of that Gaussian (larger = wider spread of d_i = a
            narrower cone).
        failure_rule: which pairs are failures: "boundary" (smallest angular margin under the
            standard max-margin direction), "margin" (smallest raw margin Delta_i, Alg. 1 line 4) or
            "random".
        w_fail: max-entropy up-weighting factor for failure pairs (App. B, w_fail > 1).
        tau: max-entropy temperature tau (Eq. 2).
        tau_fail: sharpened temperature for failure pairs (App. B, 0 < tau_fail < tau).
        eta_fracs: sublevel thresholds as fractions of L_base(0) = n log 2 (the loss of the zero
            reward), eta = frac * n log 2; each in (0, 1].
        sublevel_radius: the max-entropy sublevel sets are unbounded along the cone, so they are
            drawn on [-R, R]^2 and their areas measured inside the ball |theta| <= R.
        grid_size: points per axis of the theta grid (membership plots, sublevel areas).
        n_vertices: vertices of the polygon standing in for the disk |theta| <= r when clipping.
        seed: base seed of the draws; draw k uses ``np.random.default_rng([seed, k])``.
    """

    n_constraints: int = 8
    n_failures: int = 1
    margin: float = 0.0
    margin_fail: float = 0.25
    radius: float = 1.0
    n_draws: int = 500
    theta_true_angle: float = math.pi / 4
    d_mean: float = 1.0
    d_std: float = 1.0
    failure_rule: str = "boundary"
    w_fail: float = 3.0
    tau: float = 1.0
    tau_fail: float = 0.5
    eta_fracs: tuple[float, ...] = (0.6, 0.75, 0.9)
    sublevel_radius: float = 3.0
    grid_size: int = 161
    n_vertices: int = 720
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.n_constraints >= 1, f"n_constraints must be >= 1, got {self.n_constraints}."),
            (1 <= self.n_failures <= self.n_constraints,
             f"n_failures must be in [1, n_constraints={self.n_constraints}], got {self.n_failures}."),
            (self.margin >= 0, f"margin M must be >= 0 (Sec. 4.4 uses 0), got {self.margin}."),
            (self.margin_fail > self.margin,
             f"margin_fail must exceed margin (App. B: M_fail > M), got M_fail={self.margin_fail}, "
             + f"M={self.margin}."),
            (self.radius > 0, f"radius must be > 0, got {self.radius}."),
            (self.sublevel_radius > 0, f"sublevel_radius must be > 0, got {self.sublevel_radius}."),
            (self.n_draws >= 1, f"n_draws must be >= 1, got {self.n_draws}."),
            (self.d_std > 0, f"d_std must be > 0, got {self.d_std}."),
            (self.failure_rule in FAILURE_RULES,
             f"Unknown failure_rule {self.failure_rule!r}; valid: {', '.join(FAILURE_RULES)}."),
            (self.w_fail > 1, f"w_fail must be > 1 (App. B up-weighting), got {self.w_fail}."),
            (self.tau > 0, f"tau must be > 0, got {self.tau}."),
            (0 < self.tau_fail < self.tau,
             f"tau_fail must be in (0, tau={self.tau}) (App. B sharpening), got {self.tau_fail}."),
            (len(self.eta_fracs) >= 1 and all(0 < e <= 1 for e in self.eta_fracs),
             f"eta_fracs must be non-empty fractions in (0, 1], got {self.eta_fracs}."),
            (self.grid_size >= 3, f"grid_size must be >= 3, got {self.grid_size}."),
            (self.n_vertices >= 8, f"n_vertices must be >= 8, got {self.n_vertices}."),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)


# ---------------------------------------------------------------------------------------------
# Constraints and failures
# ---------------------------------------------------------------------------------------------
def unit(angle: float) -> np.ndarray:
    """The unit vector (cos angle, sin angle)."""
    return np.array([np.cos(angle), np.sin(angle)])


def sample_constraints(rng: np.random.Generator, n: int, theta_true_angle: float = np.pi / 4,
                       d_mean: float = 1.0, d_std: float = 1.0) -> np.ndarray:
    """n preference directions d_i = h(o+) - h(o-) (rows of an n x 2 array), Sec. 4.4.

    d_i ~ N(d_mean * theta*, d_std^2 I) conditioned on theta* . d_i > 0 (rejection sampling), so all
    pairs agree with the true reward theta* and the cone F contains theta*.
    """
    theta_true = unit(theta_true_angle)
    out = np.empty((0, 2))
    while len(out) < n:
        d = d_mean * theta_true + d_std * rng.standard_normal((2 * n, 2))
        out = np.vstack([out, d[d @ theta_true > 0]])
    return out[:n]


def baseline_direction(D: np.ndarray) -> np.ndarray:
    """The standard max-margin reward direction: the unit u maximising min_i u . d_i / |d_i|.

    In 2D this is the bisector of the feasible arc of the cone {theta . d_i >= 0} (each boundary
    ray is at angular distance half the arc width from it). Raises if the cone is empty.
    """
    arc = feasible_arc(D)
    if arc is None:
        raise ValueError("The constraints are inconsistent (empty cone), so there is no baseline.")
    return unit(arc[0] + arc_width(arc) / 2)


def select_failures(D: np.ndarray, n_failures: int, rule: str = "boundary",
                    rng: np.random.Generator | None = None) -> np.ndarray:
    """Indices of the failure pairs (Sec. 4.3: near-tie or misclassified pairs), sorted.

    Near-ties are measured under the standard solution u = :func:`baseline_direction`:
    ``"boundary"`` takes the smallest angular margins u . d_i / |d_i| (closest to the edge of the
    cone; the two support vectors come first), ``"margin"`` the smallest raw margins
    Delta_i = u . d_i (Alg. 1 line 4, F_t = {i : Delta_i <= gamma_t}), ``"random"`` a uniform subset.
    """
    if rule not in FAILURE_RULES:
        raise ValueError(f"Unknown failure rule {rule!r}; valid: {', '.join(FAILURE_RULES)}.")
    if rule == "random":
        if rng is None:
            raise ValueError("failure rule 'random' needs an rng.")
        return np.sort(rng.choice(len(D), size=n_failures, replace=False))
    u = baseline_direction(D)
    score = D @ u / np.linalg.norm(D, axis=1) if rule == "boundary" else D @ u
    return np.sort(np.argsort(score, kind="stable")[:n_failures])


@dataclass(frozen=True, eq=False)
class ToyProblem:
    """One draw: constraints D (n x 2), failure indices, margins M and M_fail, ball radius r."""

    D: np.ndarray
    failures: np.ndarray
    margin: float
    margin_fail: float
    radius: float
    theta_true: np.ndarray

    @property
    def margins_base(self) -> np.ndarray:
        """Margin per constraint for standard IRL: M everywhere."""
        return np.full(len(self.D), self.margin)

    @property
    def margins_fa(self) -> np.ndarray:
        """Margin per constraint for FA-IRL: M_fail on failure pairs, M elsewhere (App. B)."""
        m = self.margins_base
        m[self.failures] = self.margin_fail
        return m


def make_problem(cfg: TheoryConfig, rng: np.random.Generator) -> ToyProblem:
    """Sample constraints and pick failures for one draw of the toy."""
    D = sample_constraints(rng, cfg.n_constraints, cfg.theta_true_angle, cfg.d_mean, cfg.d_std)
    failures = select_failures(D, cfg.n_failures, cfg.failure_rule, rng)
    return ToyProblem(D, failures, cfg.margin, cfg.margin_fail, cfg.radius, unit(cfg.theta_true_angle))


def draw_problem(cfg: TheoryConfig, k: int = 0, seed: int | None = None) -> ToyProblem:
    """Draw number k of :func:`ambiguity_over_draws` (same seed => same constraints)."""
    return make_problem(cfg, np.random.default_rng([cfg.seed if seed is None else seed, k]))


# ---------------------------------------------------------------------------------------------
# Exact feasible arcs (directions of admissible rewards)
# ---------------------------------------------------------------------------------------------
FULL_CIRCLE = (-np.pi, np.pi)


def _wrap(a):
    """Angle(s) wrapped to [-pi, pi)."""
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


def _margins(margins, n: int) -> np.ndarray:
    m = np.broadcast_to(np.asarray(margins, dtype=float), (n,))
    if np.any(m < 0):
        raise ValueError("Margins must be >= 0 (then every constraint arc is at most a half circle).")
    return m


def intersect_arc(arc: tuple[float, float] | None, D: np.ndarray, margins=0.0,
                  radius: float = 1.0) -> tuple[float, float] | None:
    """Intersect an arc of directions with the constraints theta . d_i >= m_i, |theta| <= r.

    A unit direction u is admissible when some theta = s u with 0 < s <= r satisfies all
    constraints; as m_i >= 0 the best scale is s = r, so the condition is u . d_i >= m_i / r, an arc
    centred on the angle of d_i with half-width arccos(m_i / (r |d_i|)) <= pi / 2 (empty if that ratio
    exceeds 1). Arcs of at most a half circle intersect in a single arc, computed exactly from angles.
    An arc is (start, end) with start in [-pi, pi) and end - start its width; None is the empty set.
    """
    D = np.atleast_2d(np.asarray(D, dtype=float))
    m = _margins(margins, len(D))
    for d, mi in zip(D, m):
        if arc is None:
            return None
        norm = np.hypot(*d)
        if norm == 0:
            if mi > 0:
                return None
            continue
        ratio = mi / (radius * norm)
        if ratio > 1:
            return None
        phi, half = np.arctan2(d[1], d[0]), np.arccos(ratio)
        start, end = arc
        if end - start >= 2 * np.pi:  # the full circle: the constraint arc itself
            start, end = phi - half, phi + half
        else:
            mid = (start + end) / 2
            phi = mid + _wrap(phi - mid)  # the copy of phi nearest the arc
            start, end = max(start, phi - half), min(end, phi + half)
            if start > end:
                return None
        shift = _wrap(start) - start
        arc = (start + shift, end + shift)
    return arc


def feasible_arc(D: np.ndarray, margins=0.0, radius: float = 1.0) -> tuple[float, float] | None:
    """The arc of reward directions admissible for all constraints (Sec. 4.4's cone F on the circle).

    With margins 0 this is the homogeneous cone {theta : theta . d_i >= 0}; with margins it is the
    set of directions reachable inside the ball |theta| <= r (see :func:`intersect_arc`).
    """
    return intersect_arc(FULL_CIRCLE, D, margins, radius)


def arc_width(arc: tuple[float, float] | None) -> float:
    """Angular width (radians) of an arc; 0 for the empty set. Monotone under inclusion."""
    return 0.0 if arc is None else float(arc[1] - arc[0])


def angle_in_arc(angle, arc: tuple[float, float] | None):
    """Whether angle(s) lie on the arc."""
    if arc is None:
        return np.zeros(np.shape(angle), dtype=bool)
    return (np.asarray(angle) - arc[0]) % (2 * np.pi) <= arc[1] - arc[0] + TOL


# ---------------------------------------------------------------------------------------------
# Feasible sets inside the norm ball: membership, polygon, diameter, area
# ---------------------------------------------------------------------------------------------
def feasible_mask(thetas: np.ndarray, D: np.ndarray, margins=0.0, radius: float | None = None) -> np.ndarray:
    """Membership of each theta (rows of an N x 2 array) in {theta . d_i >= m_i for all i, |theta| <= r}.

    ``radius=None`` drops the ball (the plain cone / polyhedron of Sec. 4.4).
    """
    thetas = np.atleast_2d(thetas)
    m = np.broadcast_to(np.asarray(margins, dtype=float), (len(D),))
    inside = np.all(thetas @ np.asarray(D).T >= m, axis=1)
    if radius is not None:
        inside &= np.hypot(thetas[:, 0], thetas[:, 1]) <= radius
    return inside


def disk_polygon(radius: float, n_vertices: int = 720) -> np.ndarray:
    """A regular polygon inscribed in the circle |theta| = r (counter-clockwise vertices)."""
    a = np.linspace(-np.pi, np.pi, n_vertices, endpoint=False)
    return radius * np.column_stack([np.cos(a), np.sin(a)])


def clip_polygon(P: np.ndarray, D: np.ndarray, margins=0.0) -> np.ndarray:
    """Clip a convex polygon by the half-planes theta . d_i >= m_i (Sutherland-Hodgman).

    Clipping a set by more half-planes can only remove points, so F_FA = clip(F, failure
    constraints) is a subset of F by construction. Returns a (k, 2) array, k = 0 if empty.
    """
    D = np.atleast_2d(np.asarray(D, dtype=float))
    for d, mi in zip(D, np.broadcast_to(np.asarray(margins, dtype=float), (len(D),))):
        if len(P) == 0:
            break
        s = P @ d - mi
        if np.all(s >= 0):
            continue
        nxt, s_nxt = np.roll(P, -1, axis=0), np.roll(s, -1)
        keep = s >= 0
        cross = keep != (s_nxt >= 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(cross, s / (s - s_nxt), 0.0)
        hits = P + t[:, None] * (nxt - P)
        pts = np.stack([P, hits], axis=1).reshape(-1, 2)
        P = pts[np.stack([keep, cross], axis=1).reshape(-1)]
    return P


def feasible_set(D: np.ndarray, margins=0.0, radius: float = 1.0, n_vertices: int = 720) -> np.ndarray:
    """F = {|theta| <= r, theta . d_i >= m_i} as a convex polygon (disk approximated by an n-gon).

    The inscribed n-gon loses a relative area of about (2 pi / n)^2 / 6 (6e-6 for n = 720);
    inclusions between sets are exact because every set is clipped from the same polygon.
    """
    return clip_polygon(disk_polygon(radius, n_vertices), D, margins)


def polygon_area(P: np.ndarray) -> float:
    """Area of a polygon (shoelace formula); 0 for fewer than 3 vertices."""
    if len(P) < 3:
        return 0.0
    x, y = P[:, 0], P[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def set_diameter(P: np.ndarray) -> float:
    """Diameter max |a - b| over a point set (for a convex polygon: over its vertices); 0 if empty."""
    if len(P) < 2:
        return 0.0
    from scipy.spatial.distance import pdist

    return float(pdist(P).max())


def binds(F: np.ndarray, d_f: np.ndarray, margin_fail: float) -> bool:
    """Whether the failure constraint theta . d_f >= M_fail removes part of the set F (a polygon).

    A linear function attains its minimum over a convex polygon at a vertex, so the constraint
    binds iff some vertex of F violates it (the condition for strict inclusion in Theorem 1).
    """
    return bool(len(F) > 0 and np.min(F @ np.asarray(d_f, dtype=float)) < margin_fail)


# ---------------------------------------------------------------------------------------------
# Ambiguity over Monte Carlo draws (Corollary 1)
# ---------------------------------------------------------------------------------------------
MEASURES = ("arc_width", "diameter", "area")


def ambiguity(problem: ToyProblem, n_vertices: int = 720) -> dict:
    """Corollary 1's ambiguity measures of F and F_FA for one draw.

    Returns arc width (directions admissible in the ball), diameter and area of both sets, whether
    any failure binds, and whether the true direction theta* is admissible in each set.
    """
    p = problem
    F = feasible_set(p.D, p.margins_base, p.radius, n_vertices)
    F_fa = clip_polygon(F, p.D[p.failures], p.margin_fail)
    arc = feasible_arc(p.D, p.margins_base, p.radius)
    arc_fa = intersect_arc(arc, p.D[p.failures], p.margin_fail, p.radius)
    angle_true = np.arctan2(p.theta_true[1], p.theta_true[0])
    return {
        "arc_width_base": arc_width(arc), "arc_width_fa": arc_width(arc_fa),
        "diameter_base": set_diameter(F), "diameter_fa": set_diameter(F_fa),
        "area_base": polygon_area(F), "area_fa": polygon_area(F_fa),
        "binds": any(binds(F, p.D[f], p.margin_fail) for f in p.failures),
        "truth_in_base": bool(angle_in_arc(angle_true, arc)),
        "truth_in_fa": bool(angle_in_arc(angle_true, arc_fa)),
    }


def ambiguity_over_draws(cfg: TheoryConfig, rng: np.random.Generator | int | None = None) -> dict:
    """Ambiguity of F and F_FA over ``cfg.n_draws`` random constraint sets (Corollary 1).

    Draw k uses ``np.random.default_rng([seed, k])`` with seed = ``cfg.seed`` (rng None), the int
    given, or an int taken from the Generator given; :func:`draw_problem` rebuilds any single draw.
    Returns tidy columns (a dict of equal-length arrays; ``pandas.DataFrame(result)`` works): draw,
    ``<measure>_base`` / ``<measure>_fa`` for each of :data:`MEASURES`, binds, truth_in_base,
    truth_in_fa (see :func:`ambiguity`).
    """
    if isinstance(rng, np.random.Generator):
        seed = int(rng.integers(2**31))
    else:
        seed = cfg.seed if rng is None else int(rng)
    rows = [{"draw": k, **ambiguity(draw_problem(cfg, k, seed), cfg.n_vertices)} for k in range(cfg.n_draws)]
    return {key: np.array([r[key] for r in rows]) for key in rows[0]}


def summarize_ambiguity(results: dict) -> dict:
    """Summary statistics per measure: means with and without failures, the fraction of draws where
    FA-IRL is strictly smaller, and the fraction where it is never larger (Theorem 1: always 1.0).

    Also the fractions of draws where some failure binds, where F_FA is empty (the hard FA-IRL
    constraints are infeasible, or leave a zero-area set), and where theta* survives in F and in F_FA.
    """
    out = {"n_draws": len(results["draw"])}
    for m in MEASURES:
        base, fa = results[f"{m}_base"], results[f"{m}_fa"]
        out[f"{m}_mean_base"] = float(base.mean())
        out[f"{m}_mean_fa"] = float(fa.mean())
        out[f"{m}_frac_strictly_smaller"] = float(np.mean(fa < base - TOL))
        out[f"{m}_frac_not_larger"] = float(np.mean(fa <= base + TOL))
    out["frac_binds"] = float(np.mean(results["binds"]))
    out["frac_fa_empty"] = float(np.mean(results["area_fa"] <= TOL))
    out["frac_truth_in_base"] = float(np.mean(results["truth_in_base"]))
    out["frac_truth_in_fa"] = float(np.mean(results["truth_in_fa"]))
    return out


# ---------------------------------------------------------------------------------------------
# Max-entropy side (App. B): losses and sublevel sets
# ---------------------------------------------------------------------------------------------
def logistic_loss(delta, tau: float):
    """l_tau(Delta) = log(1 + exp(-Delta / tau)) (App. B; Eq. 2 per pair), computed stably."""
    return np.logaddexp(0.0, -np.asarray(delta, dtype=float) / tau)


def loss_base(thetas: np.ndarray, D: np.ndarray, tau: float = 1.0) -> np.ndarray:
    """L_base(theta) = sum_i l_tau(theta . d_i) for each theta (rows of an N x 2 array), App. B."""
    return logistic_loss(np.atleast_2d(thetas) @ np.asarray(D).T, tau).sum(axis=1)


def loss_fa(thetas: np.ndarray, D: np.ndarray, failures, tau: float = 1.0, variant: str = "upweight",
            w_fail: float = 3.0, tau_fail: float = 0.5) -> np.ndarray:
    """L_FA(theta) (App. B): failure pairs up-weighted (w_fail l_tau) or sharpened (l_{tau_fail}).

    Up-weighting: L_FA - L_base = (w_fail - 1) sum_f l_tau(Delta_f) > 0 at every theta, because
    l_tau > 0 everywhere. Sharpening: l_{tau_fail}(Delta) >= l_tau(Delta) only for Delta <= 0
    (equality at 0) and the reverse for Delta > 0 -- App. B's "l_tau decreases as tau increases" is
    true only for misranked pairs, so L_FA >= L_base holds only where every failure has Delta_f <= 0.
    """
    if variant not in ME_VARIANTS:
        raise ValueError(f"Unknown max-entropy variant {variant!r}; valid: {', '.join(ME_VARIANTS)}.")
    delta = np.atleast_2d(thetas) @ np.asarray(D).T
    is_fail = np.zeros(delta.shape[1], dtype=bool)
    is_fail[np.asarray(failures, dtype=int)] = True
    per_pair = logistic_loss(delta, tau)
    if variant == "upweight":
        per_pair = np.where(is_fail, w_fail * per_pair, per_pair)
    else:
        per_pair = np.where(is_fail, logistic_loss(delta, tau_fail), per_pair)
    return per_pair.sum(axis=1)


def theta_grid(radius: float = 1.0, size: int = 161) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A size x size grid over [-r, r]^2: (thetas N x 2, X, Y) with X, Y for contour plots."""
    axis = np.linspace(-radius, radius, size)
    X, Y = np.meshgrid(axis, axis)
    return np.column_stack([X.ravel(), Y.ravel()]), X, Y


def sublevel_areas(problem: ToyProblem, cfg: TheoryConfig) -> dict:
    """Areas of the sublevel sets {L_base <= eta} and {L_FA <= eta} inside the ball (App. B).

    The sets are unbounded along the cone (L -> 0 there), so areas are measured inside
    |theta| <= ``cfg.sublevel_radius`` on a grid of ``cfg.grid_size`` points per axis. eta = frac * n log 2 for frac in
    ``cfg.eta_fracs``. Tidy columns: variant, eta_frac, eta, area_base, area_fa, fa_subset_base
    (every grid point of {L_FA <= eta} is in {L_base <= eta}), n_outside (grid points violating it).
    """
    r = cfg.sublevel_radius
    thetas, X, _ = theta_grid(r, cfg.grid_size)
    in_ball = np.hypot(thetas[:, 0], thetas[:, 1]) <= r
    cell = (X[0, 1] - X[0, 0]) ** 2
    base = loss_base(thetas, problem.D, cfg.tau)
    rows = []
    for variant in ME_VARIANTS:
        fa = loss_fa(thetas, problem.D, problem.failures, cfg.tau, variant, cfg.w_fail, cfg.tau_fail)
        for frac in cfg.eta_fracs:
            eta = frac * len(problem.D) * np.log(2)
            in_base, in_fa = (base <= eta) & in_ball, (fa <= eta) & in_ball
            outside = int(np.sum(in_fa & ~in_base))
            rows.append({"variant": variant, "eta_frac": frac, "eta": eta,
                         "area_base": in_base.sum() * cell, "area_fa": in_fa.sum() * cell,
                         "fa_subset_base": outside == 0, "n_outside": outside})
    return {key: np.array([row[key] for row in rows]) for key in rows[0]}


# ---------------------------------------------------------------------------------------------
# Plots (return figures; notebooks save them with fairl_lib.plots.save_fig)
# ---------------------------------------------------------------------------------------------
def _line_segment(d: np.ndarray, m: float, r: float) -> np.ndarray | None:
    """End points of the line theta . d = m clipped to the disk |theta| <= r (None if it misses)."""
    norm = np.hypot(*d)
    if norm == 0 or abs(m) >= r * norm:
        return None
    dist = m / norm
    n = d / norm
    t = np.array([-n[1], n[0]])
    half = np.sqrt(r**2 - dist**2)
    return np.array([dist * n - half * t, dist * n + half * t])


def plot_feasible_cone(problem: ToyProblem, grid_size: int = 41, n_vertices: int = 720, ax=None,
                       show_all_constraints: bool = True):
    """Figure 2: feasible rewards of standard IRL (grey + green dots, blue outline) and FA-IRL (green).

    Dots are a grid inside |theta| <= r: grey = feasible for standard IRL only (F minus F_FA), green =
    feasible for FA-IRL (F_FA). Blue: the outline of F (thin dashed blue: every standard constraint
    line). Red: the failure lines theta . d_f = M_fail. Black arrow: the true reward direction.
    Returns the figure.
    """
    import matplotlib.pyplot as plt

    p = problem
    fig = ax.figure if ax is not None else plt.figure(figsize=(5.2, 5.2))
    ax = ax if ax is not None else fig.add_subplot()
    r = p.radius
    thetas, _, _ = theta_grid(r, grid_size)
    in_base = feasible_mask(thetas, p.D, p.margins_base, r)
    in_fa = feasible_mask(thetas, p.D, p.margins_fa, r)
    ax.add_patch(plt.Circle((0, 0), r, fill=False, color="0.7", lw=1, ls=":"))
    if show_all_constraints:
        for d in p.D:
            seg = _line_segment(d, p.margin, r)
            if seg is not None:
                ax.plot(*seg.T, color="tab:blue", lw=0.6, ls="--", alpha=0.5)
    ax.scatter(*thetas[in_base & ~in_fa].T, s=9, color="0.55", label="standard IRL only")
    ax.scatter(*thetas[in_fa].T, s=9, color="tab:green", label=r"FA-IRL ($\mathcal{F}_{FA}$)")
    F = feasible_set(p.D, p.margins_base, r, n_vertices)
    if len(F):
        ax.fill(*F.T, fill=False, edgecolor="tab:blue", lw=2, label=r"standard $\mathcal{F}$")
    for k, f in enumerate(p.failures):
        seg = _line_segment(p.D[f], p.margin_fail, r)
        if seg is not None:
            ax.plot(*seg.T, color="tab:red", lw=2,
                    label=r"failure $\theta^\top d_f = M_{fail}$" if k == 0 else None)
    ax.annotate("", xy=0.95 * r * p.theta_true, xytext=(0, 0),
                arrowprops={"arrowstyle": "->", "color": "black", "lw": 1.2})
    ax.text(*(1.0 * r * p.theta_true), r"$\theta^*$", ha="left", va="bottom")
    ax.set(xlim=(-1.08 * r, 1.08 * r), ylim=(-1.08 * r, 1.08 * r), aspect="equal",
           xlabel=r"$\theta_1$", ylabel=r"$\theta_2$",
           title=f"{len(p.D)} constraints, {len(p.failures)} failure(s), "
                 f"$M$={p.margin:g}, $M_{{fail}}$={p.margin_fail:g}")
    ax.legend(loc="lower left", fontsize=7, framealpha=0.9)
    return fig


def plot_ambiguity(results: dict, bins: int = 30):
    """Corollary 1 over draws: per measure, histograms with/without failures (top) and a paired
    scatter FA-IRL vs standard IRL with the diagonal y = x (bottom: no point lies above it).
    Returns the figure.
    """
    import matplotlib.pyplot as plt

    titles = {"arc_width": "angular width (rad)", "diameter": "diameter", "area": "area"}
    fig, axes = plt.subplots(2, len(MEASURES), figsize=(4 * len(MEASURES), 7))
    for j, m in enumerate(MEASURES):
        base, fa = results[f"{m}_base"], results[f"{m}_fa"]
        edges = np.histogram_bin_edges(np.concatenate([base, fa]), bins=bins)
        axes[0, j].hist(base, bins=edges, alpha=0.55, color="tab:blue", label="standard IRL")
        axes[0, j].hist(fa, bins=edges, alpha=0.55, color="tab:green", label="FA-IRL")
        axes[0, j].set(title=titles[m], ylabel="draws" if j == 0 else None)
        lim = (0, max(base.max(), fa.max()) * 1.05 or 1)
        binding = results["binds"]
        axes[1, j].scatter(base[binding], fa[binding], s=8, color="tab:green", label="a failure binds")
        axes[1, j].scatter(base[~binding], fa[~binding], s=8, color="0.5", label="no failure binds")
        axes[1, j].plot(lim, lim, color="black", lw=1, ls="--")
        axes[1, j].set(xlim=lim, ylim=lim, aspect="equal", xlabel=f"standard IRL {titles[m]}",
                       ylabel="FA-IRL" if j == 0 else None)
    axes[0, 0].legend(fontsize=8)
    axes[1, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_sublevel_sets(problem: ToyProblem, cfg: TheoryConfig, eta_frac: float | None = None):
    """App. B max-entropy, one panel per variant (up-weighting, sharpening).

    Shading for one eta (default: the middle of ``cfg.eta_fracs``): green = in {L_FA <= eta} (and in
    {L_base <= eta}), grey = in {L_base <= eta} only, red = in {L_FA <= eta} but NOT in
    {L_base <= eta} -- empty for up-weighting, not for sharpening (module note 5). Lines: contours
    L_base = eta (blue) and L_FA = eta (green, dashed) for every eta. Bottom row: L_FA - L_base
    (red > 0 > blue) with its zero line -- positive everywhere for up-weighting, negative wherever a
    sharpened failure pair is ranked correctly (Delta_f > 0). Window: |theta_k| <=
    ``cfg.sublevel_radius``. Returns the figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap, TwoSlopeNorm

    p = problem
    r = cfg.sublevel_radius
    thetas, X, Y = theta_grid(r, cfg.grid_size)
    base = loss_base(thetas, p.D, cfg.tau).reshape(X.shape)
    fracs = sorted(cfg.eta_fracs)
    eta_frac = fracs[len(fracs) // 2] if eta_frac is None else eta_frac
    eta = eta_frac * len(p.D) * np.log(2)
    etas = [f * len(p.D) * np.log(2) for f in fracs]
    cmap = ListedColormap(["white", "0.8", "tab:green", "tab:red"])
    fig, axes = plt.subplots(2, 2, figsize=(10, 10))
    for ax, ax_diff, variant in zip(axes[0], axes[1], ME_VARIANTS):
        fa = loss_fa(thetas, p.D, p.failures, cfg.tau, variant, cfg.w_fail, cfg.tau_fail).reshape(X.shape)
        in_base, in_fa = base <= eta, fa <= eta
        region = np.select([in_fa & ~in_base, in_fa, in_base], [3, 2, 1], 0)
        ax.pcolormesh(X, Y, region, cmap=cmap, vmin=-0.5, vmax=3.5, shading="auto", alpha=0.6)
        cb = ax.contour(X, Y, base, levels=etas, colors="tab:blue", linewidths=1.2)
        cf = ax.contour(X, Y, fa, levels=etas, colors="tab:green", linewidths=1.2, linestyles="--")
        ax.clabel(cb, fmt="%.2g", fontsize=7)
        ax.clabel(cf, fmt="%.2g", fontsize=7)
        for f in p.failures:
            ax.annotate("", xy=0.5 * r * p.D[f] / np.hypot(*p.D[f]), xytext=(0, 0),
                        arrowprops={"arrowstyle": "->", "color": "tab:red", "lw": 1.5})
        what = (f"up-weighting $w_{{fail}}$={cfg.w_fail:g}" if variant == "upweight"
                else rf"sharpening $\tau_{{fail}}$={cfg.tau_fail:g} < $\tau$={cfg.tau:g}")
        ax.plot([], [], color="tab:blue", label=r"$L_{base}=\eta$")
        ax.plot([], [], color="tab:green", ls="--", label=r"$L_{FA}=\eta$")
        ax.fill([], [], color="0.8", label=rf"$L_{{base}}\leq{eta:.2g}$ only")
        ax.fill([], [], color="tab:green", alpha=0.6, label=rf"$L_{{FA}}\leq{eta:.2g}$")
        ax.fill([], [], color="tab:red", alpha=0.6, label=rf"$L_{{FA}}\leq{eta:.2g} < L_{{base}}$")
        ax.plot([], [], color="tab:red", label=r"failure direction $d_f$")
        ax.set(aspect="equal", title=what, xlabel=r"$\theta_1$", ylabel=r"$\theta_2$")
        ax.legend(loc="lower left", fontsize=7, framealpha=0.9)
        diff = fa - base
        norm = TwoSlopeNorm(vcenter=0.0, vmin=min(diff.min(), -1e-9), vmax=max(diff.max(), 1e-9))
        mesh = ax_diff.pcolormesh(X, Y, diff, cmap="RdBu_r", norm=norm, shading="auto")
        if diff.min() < 0 < diff.max():
            ax_diff.contour(X, Y, diff, levels=[0.0], colors="black", linewidths=1)
        fig.colorbar(mesh, ax=ax_diff, shrink=0.8, label=r"$L_{FA}-L_{base}$")
        ax_diff.set(aspect="equal", xlabel=r"$\theta_1$", ylabel=r"$\theta_2$",
                    title=rf"$L_{{FA}}-L_{{base}}$: min {diff.min():.2g}, max {diff.max():.2g}")
    fig.tight_layout()
    return fig


def interactive_cone(cfg: TheoryConfig):
    """Sliders (M_fail, number of constraints, seed) that redraw :func:`plot_feasible_cone`.

    For JupyterLab readers. Importing this module needs no display; without ipywidgets (or a
    frontend) this returns None or an inert widget instead of failing.
    """
    try:
        import ipywidgets as widgets
        from IPython.display import display
    except ImportError:
        print("ipywidgets is not installed; the interactive figure is skipped.")
        return None
    import matplotlib.pyplot as plt

    def redraw(margin_fail: float, n_constraints: int, seed: int) -> None:
        c = dataclasses.replace(cfg, margin_fail=max(margin_fail, cfg.margin + 1e-3),
                                n_constraints=n_constraints,
                                n_failures=min(cfg.n_failures, n_constraints))
        fig = plot_feasible_cone(draw_problem(c, 0, seed))
        display(fig)
        plt.close(fig)

    ui = widgets.interactive(
        redraw,
        margin_fail=widgets.FloatSlider(value=cfg.margin_fail, min=cfg.margin + 0.05,
                                        max=cfg.margin + 1.5 * cfg.radius, step=0.05,
                                        description="M_fail"),
        n_constraints=widgets.IntSlider(value=cfg.n_constraints, min=max(2, cfg.n_failures), max=40,
                                        description="constraints"),
        seed=widgets.IntSlider(value=cfg.seed, min=0, max=50, description="seed"),
    )
    try:
        display(ui)
    except Exception as err:  # noqa: BLE001 -- no frontend: the static figures tell the story
        print(f"Interactive figure not shown ({err}).")
    return ui
