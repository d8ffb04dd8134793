"""penalty_sweep.py: the weight c of Eq. 3's failure-path penalty, swept on the synthetic environment.

c = 1 must be notebook 04's grid (same cache folder, not retrained, same numbers as Table 1); the
failure path must act more as the penalty weakens; the sentences must read the numbers."""
from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from fairl_lib.analysis import evaluate
from fairl_lib.stages import irl_grid
from fairl_lib.stages import penalty_sweep as P
from fairl_lib.config import ConfigError, make_config
from fairl_lib.stages.pairmix import training_starc

# long enough (no early stopping) for the penalty to shrink w_F at c = 1: on these pairs
# std(R_F) / std(R_D) then rises strictly as c falls for every FA run
SETTINGS = ("irl.n_seeds=2; irl.max_epochs=25; irl.patience=25; irl.bottomk_rounds=20; irl.hidden=8; "
            "penalty_sweep.scales=[1.0, 0.1, 0.0]")


@pytest.fixture(scope="module")
def swept(module_results, synthetic_pairs):
    cfg = make_config("smoke", overrides=SETTINGS, notebook="05_tables")
    ps = synthetic_pairs
    ho = evaluate.synthetic_heldout(1, 150, 12)
    grid = irl_grid.grid_stage(cfg, ps)  # notebook 04's grid, trained first
    receipt = grid.folder / "_stage.json"
    before = receipt.stat().st_mtime_ns
    sw = P.sweep_stage(cfg, ps, ho)
    return cfg, ps, ho, grid, sw, receipt, before


def test_profiles_and_validation():
    assert make_config("smoke").penalty_sweep.scales == (1.0, 0.01)
    for name in ("cpu", "paper"):
        assert make_config(name).penalty_sweep.scales == (1.0, 0.1, 0.01, 0.0)
        assert make_config(name).irl.penalty_scale == 1.0  # the main grid stays Eq. 3 as printed
    cfg = make_config("smoke", overrides="penalty_sweep.scales=[1, 0]")
    assert cfg.penalty_sweep.scales == (1.0, 0.0) and all(isinstance(s, float) for s in cfg.penalty_sweep.scales)
    for bad, msg in (("[]", "empty"), ("[1.0, -0.1]", ">= 0"), ("[1.0, 1]", "duplicates")):
        with pytest.raises(ConfigError, match=msg):
            make_config("smoke", overrides=f"penalty_sweep.scales={bad}")
    assert P.with_penalty_scale(cfg.irl, 0.01).penalty_scale == 0.01
    assert P.with_penalty_scale(cfg.irl, 1) == cfg.irl


def test_scale_keys_and_positions():
    assert [P.scale_key(s) for s in (1.0, 0.1, 0.01, 0.0)] == ["1", "0.1", "0.01", "0"]
    assert P.scale_positions([1.0, 0.1, 0.01, 0.0]) == pytest.approx({1.0: 0.0, 0.1: -1.0, 0.01: -2.0, 0.0: -3.0})
    assert P.scale_positions([1.0, 0.01]) == pytest.approx({1.0: 0.0, 0.01: -2.0})
    assert P.scale_positions([0.0]) == {0.0: 0.0}


def test_main_scale_is_notebook04_grid_not_retrained(swept):
    cfg, _, _, grid, sw, receipt, before = swept
    assert sw.scales == [1.0, 0.1, 0.0] and sw.main_scale == 1.0
    assert sw.folders[1.0] == str(grid.folder)
    assert receipt.stat().st_mtime_ns == before  # read from the cache
    assert len({sw.folders[s] for s in sw.scales}) == 3
    # FORCE retrains the sweep's own grids, never notebook 04's
    control = dataclasses.replace(cfg.control, force=True, forced=("penalty_sweep",))  # notebook 05's FORCE
    forced = P.sweep_stage(dataclasses.replace(cfg, control=control), swept[1], swept[2])
    assert receipt.stat().st_mtime_ns == before
    pd.testing.assert_frame_equal(forced.per_run, sw.per_run)  # and training is deterministic


def test_main_scale_gives_exactly_table1(swept):
    _, ps, ho, grid, sw, _, _ = swept
    ev = evaluate.evaluate_grid(grid, ps, ho)
    t1 = evaluate.summarize(ev.per_run)
    at1 = sw.per_run[sw.per_run["scale"] == 1.0].set_index(["method", "seed"])
    assert len(at1) == 6 * 2
    for r in ev.per_run.itertuples():
        for k in P.TABLE1_KEYS:
            assert at1.loc[(r.method, r.seed), f"{r.set}_{k}"] == getattr(r, k)
    summ = P.summarize_sweep(sw.per_run).set_index(["scale", "method", "metric"])
    for st, by_method in t1.items():
        for m, vals in by_method.items():
            for k in P.TABLE1_KEYS:
                assert summ.loc[(1.0, m, f"{st}_{k}"), "mean"] == vals[k]["mean"]
                assert summ.loc[(1.0, m, f"{st}_{k}"), "std"] == vals[k]["std"]
    share = evaluate.failure_path_share(grid, ps).set_index(["method", "seed"])
    for (m, s), row in share.iterrows():
        assert at1.loc[(m, s), "ratio_std_F_over_D"] == row["ratio_std_F_over_D"]
        assert at1.loc[(m, s), "pairs_flipped_by_R_F"] == row["pairs_flipped_by_R_F"]
    assert at1.loc[("me_fa_gt", 0), "train_starc"] == training_starc(grid.rewards[("me_fa_gt", 0)], ps.split("train"))


def test_failure_path_acts_more_as_the_penalty_weakens(swept):
    sw = swept[4]
    pr = sw.per_run.set_index(["method", "seed", "scale"])
    for m in ("mm_fa_gt", "me_fa_gt", "mm_fa_margin", "me_fa_margin"):
        for s in sw.seeds:
            ratio = [pr.loc[(m, s, c), "ratio_std_F_over_D"] for c in (1.0, 0.1, 0.0)]
            assert ratio[0] < ratio[1] < ratio[2], (m, s, ratio)
        runs = sw.per_run[sw.per_run["method"] == m]
        mean = runs.groupby("scale")[["ratio_std_F_over_D", "pairs_flipped_by_R_F"]].mean()
        assert mean.loc[0.0, "ratio_std_F_over_D"] > 1.5 * mean.loc[1.0, "ratio_std_F_over_D"]
        assert mean.loc[0.0, "pairs_flipped_by_R_F"] > mean.loc[1.0, "pairs_flipped_by_R_F"]
    # the baselines have no failure path: nothing of them depends on c
    base = sw.per_run[sw.per_run["method"].isin(["mm_irl", "me_irl"])]
    assert (base[["ratio_std_F_over_D", "pairs_flipped_by_R_F"]] == 0).all().all()
    for _, g in base.groupby(["method", "seed"]):
        assert (g[list(P.SWEEP_METRICS)].nunique() == 1).all()


def test_table_metrics_and_figure(swept):
    sw = swept[4]
    tab = P.sweep_table(sw.summary)
    assert tab.index.names == ["penalty scale c", "method"] and len(tab) == 3 * 6
    assert tab.loc[("1", "Max-Entropy IRL"), "pairs flipped by R_F"] == "0.000 ± 0.000"
    assert "±" in tab.loc[("0", "ME FA-IRL (IRL Margin Failures)"), "Jigsaw AUC"]
    met = P.sweep_metrics(sw)
    assert met["scales"] == [1.0, 0.1, 0.0] and met["main_scale_is_notebook04_grid"]
    assert set(met["by_scale"]) == {"1", "0.1", "0"} and set(met["by_scale"]["0"]) == set(evaluate.METHOD_TITLES)
    cell = met["by_scale"]["0"]["me_fa_margin"]["jigsaw_auc"]
    assert 0 <= cell["mean"] <= 1 and cell["std"] >= 0
    fig = P.plot_sweep(sw)
    assert len(fig.axes) == 3
    assert len(fig.axes[0].get_legend_handles_labels()[0]) == 4  # the R_F panel: FA methods only
    assert P.findings(sw.summary)  # reads the real summary without error


def _summary(rows):
    """A hand-made summary: (scale, method, metric, mean, std) rows."""
    return pd.DataFrame([{"scale": s, "method": m, "metric": k, "mean": mu, "std": sd, "n_seeds": 3}
                         for s, m, k, mu, sd in rows])


def test_findings_read_hand_made_numbers():
    rows = []
    for s, flip, ratio, auc_fa, starc_fa in ((1.0, 0.0, 1e-7, 0.890, 0.70), (0.01, 0.20, 0.8, 0.850, 0.60),
                                             (0.0, 0.25, 1.2, 0.920, 0.695)):
        rows += [(s, "me_irl", "jigsaw_auc", 0.889, 0.005), (s, "me_irl", "train_starc", 0.70, 0.01),
                 (s, "me_irl", "pairs_flipped_by_R_F", 0.0, 0.0), (s, "me_irl", "ratio_std_F_over_D", 0.0, 0.0),
                 (s, "me_fa_margin", "jigsaw_auc", auc_fa, 0.005), (s, "me_fa_margin", "train_starc", starc_fa, 0.01),
                 (s, "me_fa_margin", "pairs_flipped_by_R_F", flip, 0.01),
                 (s, "me_fa_margin", "ratio_std_F_over_D", ratio, 0.1)]
    lines = P.findings(_summary(rows))
    assert lines[0].startswith("Share of training pairs whose ranking the failure path R_F flips")
    assert "c = 1 (Eq. 3 as printed): 0.0% (std R_F / std R_D up to 1e-07)" in lines[0]
    assert "c = 0.01: 20.0%" in lines[0] and "c = 0: 25.0%" in lines[0]
    auc = next(t for t in lines if t.startswith("ME FA-IRL (IRL Margin Failures), Jigsaw AUC"))
    assert "0.890 / 0.850 / 0.920 (Max-Entropy IRL: 0.889 at every c)" in auc
    assert "within one seed-std at c = 1; worse at c = 0.01; better at c = 0." in auc
    starc = next(t for t in lines if "training STARC at" in t)
    assert "within one seed-std at c = 1, 0; better at c = 0.01." in starc  # lower STARC is better
    assert any(t.startswith("Better than its baseline on Jigsaw AUC by more than one seed-std: "
                            "ME FA-IRL (IRL Margin Failures) at c = 0 (0.920 vs 0.889)") for t in lines)
    assert lines[-1].endswith("their Jigsaw AUC is identical at every scale.")

    # no win anywhere, and a baseline that moves: both said
    rows2 = [r if not (r[1] == "me_fa_margin" and r[2] == "jigsaw_auc") else (*r[:3], 0.889, 0.005)
             for r in rows]
    rows2 = [r if not (r[0] == 0.0 and r[1] == "me_irl" and r[2] == "jigsaw_auc") else (*r[:3], 0.8891, 0.005)
             for r in rows2]
    lines2 = P.findings(_summary(rows2))
    assert "At no penalty scale is an FA variant better than its baseline on Jigsaw AUC by more than one seed-std." in lines2
    assert "moves by at most 0.0001 across scales" in lines2[-1]
