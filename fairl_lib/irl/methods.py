"""The six methods of Table 1: base loss (Eq. 1 or Eq. 2) x failure source (none, labels, margins).

===============  ==========  ======================================================
name             base loss   failure path / failure set
===============  ==========  ======================================================
``mm_irl``       Eq. 1       none (base path only)
``me_irl``       Eq. 2       none (base path only)
``mm_fa_gt``     Eq. 1       supervised failures y(o)R(o) <= 0 (Alg. 1 line 6)
``me_fa_gt``     Eq. 2       supervised failures y(o)R(o) <= 0 (Alg. 1 line 6)
``mm_fa_margin`` Eq. 1       IRL-margin failures, bottom-k curriculum 20% -> 0% (Sec. 5)
``me_fa_margin`` Eq. 2       IRL-margin failures, bottom-k curriculum 20% -> 0% (Sec. 5)
===============  ==========  ======================================================

Every FA method is compared with the baseline of its loss family (``baseline``).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MethodSpec:
    """A Table 1 method.

    Attributes:
        name: identifier (``"me_fa_margin"``), used in folders and result files.
        base: loss family, ``"mm"`` (Eq. 1) or ``"me"`` (Eq. 2); the failure loss uses the same one.
        failures: failure source, None (baseline: base path only), ``"gt"`` (supervised, Alg. 1 line 6)
            or ``"margin"`` (IRL margin / bottom-k, line 4).
        title: the display name of Table 1.
        label: a short display name (figures, report sentences).
        baseline: the IRL baseline an FA method is compared with (None for the baselines).
    """

    name: str
    base: str
    failures: str | None
    title: str
    label: str
    baseline: str | None


METHODS: dict[str, MethodSpec] = {s.name: s for s in (
    MethodSpec("mm_irl", "mm", None, "Max-Margin IRL", "Max-Margin IRL", None),
    MethodSpec("me_irl", "me", None, "Max-Entropy IRL", "Max-Entropy IRL", None),
    MethodSpec("mm_fa_gt", "mm", "gt", "MM FA-IRL (Ground Truth Failures)", "MM FA-IRL (GT failures)", "mm_irl"),
    MethodSpec("me_fa_gt", "me", "gt", "ME FA-IRL (Ground Truth Failures)", "ME FA-IRL (GT failures)", "me_irl"),
    MethodSpec("mm_fa_margin", "mm", "margin", "MM FA-IRL (IRL Margin Failures)", "MM FA-IRL (margin failures)",
               "mm_irl"),
    MethodSpec("me_fa_margin", "me", "margin", "ME FA-IRL (IRL Margin Failures)", "ME FA-IRL (margin failures)",
               "me_irl"),
)}
METHOD_NAMES: tuple[str, ...] = tuple(METHODS)
FA_METHODS: tuple[str, ...] = tuple(m for m, s in METHODS.items() if s.failures is not None)
BASELINES: tuple[str, ...] = tuple(m for m, s in METHODS.items() if s.failures is None)


def method_spec(name: str) -> MethodSpec:
    """The :class:`MethodSpec` of a Table 1 method name; unknown names list the valid ones."""
    if name not in METHODS:
        raise ValueError(f"Unknown IRL method {name!r}; valid: {', '.join(METHOD_NAMES)}")
    return METHODS[name]


def method_title(name: str) -> str:
    """Table 1's display name of a method (``"ME FA-IRL (IRL Margin Failures)"``)."""
    return method_spec(name).title


def method_label(name: str) -> str:
    """The short display name of a method (``"ME FA-IRL (margin failures)"``)."""
    return method_spec(name).label


def baseline_of(name: str) -> str:
    """The IRL baseline of a method's loss family (a baseline is its own)."""
    spec = method_spec(name)
    return spec.baseline or spec.name


def check_methods(methods: list[str] | tuple[str, ...], has_labels: bool) -> list[MethodSpec]:
    """The specs of ``methods``; the ``*_fa_gt`` methods need labels y(o) (Alg. 1 line 5)."""
    specs = [method_spec(m) for m in methods]
    if any(s.failures == "gt" for s in specs) and not has_labels:
        raise ValueError("The *_fa_gt methods need ground-truth labels: "
                         "give PreferenceData(y_plus=..., y_minus=...).")
    return specs
