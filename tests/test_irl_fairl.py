"""Algorithm 1 in one file (fairl_lib.irl.fairl): a hand-worked training step, the Table 1 method
registry, and the package layout (the reference stays short; the paper's modules hold no grid code)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch

from fairl_lib import irl
from fairl_lib.irl import IRLConfig, fairl, method_spec
from fairl_lib.irl import failures as fl

IRL_DIR = Path(irl.__file__).parent
GRID_NAMES = ("grouped_forward", "grouped_backward", "hinge_grad", "maxent_grad", "masked_mean_weights",
              "_block_diagonal", "to_slots", "from_slots", "_fused_adam", "group_width")


def t(*rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def linear_model(method: str, cfg: IRLConfig, w_d, w_f=None) -> fairl.DualPathReward:
    """A 2-d linear dual-path reward with hand-set weights and zero biases."""
    model = fairl.DualPathReward(2, cfg, 0, method_spec(method), torch.float64)
    with torch.no_grad():
        for path, w in ((model.base, w_d), (model.failure, w_f)):
            if path is not None:
                path.theta["w"].copy_(t(*w))
                path.theta["b"].zero_()
    return model


# two pairs [h(o+), h(o-)]: h(o+) - h(o-) = (1, 0) and (-0.5, 1)
XB = t([[1.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [0.5, 0.0]])
NO_LABELS, NO_UNIFORMS = torch.zeros(2, 2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)


def test_hand_worked_max_margin_step_eq1_and_one_adam_step():
    cfg = IRLConfig(head="linear", lr=0.1)
    model = linear_model("mm_irl", cfg, w_d=(1.0, 0.0))
    # Delta = w . (h+ - h-) = (1, -0.5); Eq. 1 with M = 0.8: (max(0, -0.2) + max(0, 1.3)) / 2 = 0.65
    loss, logged = fairl.fa_loss(model, method_spec("mm_irl"), cfg, XB, NO_LABELS, NO_UNIFORMS,
                                 fl.round_schedule(cfg, 0), None)
    assert loss.item() == pytest.approx(0.65) and logged.tolist() == pytest.approx([0.65, 0.0, 0.0])
    loss.backward()
    # only pair 2 is inside the margin: dL/dw = -(h+ - h-) / B = (0.25, -0.5); the bias cancels in Delta
    assert model.base.theta["w"].grad.tolist() == pytest.approx([0.25, -0.5])
    assert model.base.theta["b"].grad.item() == 0.0
    # Adam's first step moves each weight by lr against the sign of its gradient
    torch.optim.Adam(model.parameters(), lr=cfg.lr).step()
    assert model.base.theta["w"].tolist() == pytest.approx([0.9, 0.1], abs=1e-6)
    assert model.base.theta["b"].item() == 0.0


def test_hand_worked_fa_step_eq3_with_routed_gradients():
    cfg = IRLConfig(head="linear", bottomk_start=0.5)            # bottom-k: k_0 = round(0.5 * 2) = 1
    model = linear_model("mm_fa_margin", cfg, w_d=(1.0, 0.0), w_f=(0.5, 0.0))
    # Delta_D = (1, -0.5), Delta_F = (0.5, -0.25): Delta = (1.5, -0.75)
    # L_base = (0 + 0.8 + 0.75) / 2 = 0.775; F_t = S_t = {pair 2}; L_fail = 1.6 + 0.75 = 2.35 (M_fail)
    # Eq. 3: L_t = 0.775 + 10 * 2.35 + 10 / 2 * ||w_F||^2 = 0.775 + 23.5 + 5 * 0.25 = 25.525
    loss, logged = fairl.fa_loss(model, method_spec("mm_fa_margin"), cfg, XB, NO_LABELS, NO_UNIFORMS,
                                 fl.round_schedule(cfg, 0), None)
    assert loss.item() == pytest.approx(25.525)
    assert logged.tolist() == pytest.approx([0.775 + 23.5, 1.0, 1.0])   # L_base + lambda L_fail, |F_t|, |S_t|
    loss.backward()
    # route_gradients: L_base reaches only R_D, L_fail and the penalty only R_F
    assert model.base.theta["w"].grad.tolist() == pytest.approx([0.25, -0.5])
    # lambda * -(h+ - h-) of pair 2 + lambda * w_F = (5, -10) + (5, 0)
    assert model.failure.theta["w"].grad.tolist() == pytest.approx([10.0, -10.0])


def test_the_reference_is_one_short_file_without_grid_machinery():
    src = (IRL_DIR / "fairl.py").read_text()
    assert len(src.splitlines()) <= 250
    for name in GRID_NAMES + ("fused", "_Grid", "_Layout", "grid"):
        assert not re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", src.split('"""', 2)[2]), name
    assert "torch.optim.Adam(" in src and ".backward()" in src


@pytest.mark.parametrize("module", ["reward.py", "losses.py"])
def test_the_papers_modules_hold_no_grid_code(module):
    src = (IRL_DIR / module).read_text()
    for name in GRID_NAMES:
        assert name not in src, f"{module} mentions {name}"


def test_irl_imports_nothing_from_fairl_lib_outside_irl_but_core():
    """The IRL core reads and writes files (artifacts) and registers its profile sections (config); nothing
    else of the package: no llm, stages or analysis."""
    for path in IRL_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fairl_lib"):
                assert node.module.startswith("fairl_lib.irl") or node.module in ("fairl_lib.artifacts",
                                                                                   "fairl_lib.config"), \
                    f"{path.name} imports {node.module}"


def test_no_timings_or_dates_in_the_irl_sources():
    pattern = re.compile(r"\d(\.\d+)?x\b|\d ?ms\b|\bms per\b|\d+% (faster|slower)|20\d\d-\d\d-\d\d|~1e-\d+")
    for path in IRL_DIR.glob("*.py"):
        assert not pattern.search(path.read_text()), path.name


def test_method_registry_table_1():
    assert irl.METHOD_NAMES == ("mm_irl", "me_irl", "mm_fa_gt", "me_fa_gt", "mm_fa_margin", "me_fa_margin")
    assert irl.BASELINES == ("mm_irl", "me_irl")
    assert irl.FA_METHODS == ("mm_fa_gt", "me_fa_gt", "mm_fa_margin", "me_fa_margin")
    assert irl.method_title("me_fa_margin") == "ME FA-IRL (IRL Margin Failures)"
    assert irl.method_title("mm_fa_gt") == "MM FA-IRL (Ground Truth Failures)"
    assert irl.method_spec("me_fa_gt").label == "ME FA-IRL (GT failures)"
    assert irl.method_spec("mm_irl") == irl.MethodSpec("mm_irl", "mm", None, "Max-Margin IRL", "Max-Margin IRL",
                                                       None)
    assert [irl.baseline_of(m) for m in irl.METHOD_NAMES] == ["mm_irl", "me_irl"] * 3
    assert [irl.METHODS[m].baseline for m in irl.METHOD_NAMES] == [None, None] + ["mm_irl", "me_irl"] * 2
    with pytest.raises(ValueError, match="valid: mm_irl, me_irl"):
        irl.method_title("fa_irl")


def test_the_package_exports_the_public_api():
    for name in ("IRLConfig", "PreferenceData", "METHODS", "METHOD_NAMES", "FA_METHODS", "BASELINES", "MethodSpec",
                 "method_spec", "method_title", "baseline_of", "HISTORY_KEYS", "GridResult", "TrainedRun",
                 "train_grid", "train_one", "RewardModel", "load_reward", "save_reward", "reward_folder",
                 "WEIGHT_FILE"):
        assert name in irl.__all__ and hasattr(irl, name), name
    assert irl.train_one is fairl.train_one
