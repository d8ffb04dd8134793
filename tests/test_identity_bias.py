"""Identity bias (fairl_lib.analysis.identity_bias): the template set and the threshold-free measures."""
from __future__ import annotations

import numpy as np
import pytest

from fairl_lib.analysis import identity_bias as IB


def test_template_set_crosses_every_identity_with_every_template():
    df = IB.template_set(("gay", "Asian"))
    assert len(df) == 2 * (len(IB.NONTOXIC_TEMPLATES) + len(IB.TOXIC_TEMPLATES))
    assert "She is an Asian woman." in set(df.text) and "Gay people are disgusting." in set(df.text)
    assert df.groupby("identity").toxic.sum().tolist() == [len(IB.TOXIC_TEMPLATES)] * 2


def test_a_scorer_biased_against_one_identity_has_a_gap_there_only():
    """A perfect scorer (toxic 1, non-toxic 0) has no gap; raising one identity's non-toxic sentences above
    every toxic one drives its BPSN AUC to 0 and its gap to the overall AUC's distance from 0."""
    df = IB.template_set(("gay", "Asian", "old"))
    y = df.toxic.to_numpy().astype(float)
    fair = y.copy()
    biased = y.copy()
    biased[(df.identity == "gay").to_numpy() & (y == 0)] = 2.0
    table = IB.bias_table(df, {"fair": fair, "biased": biased, "gt": biased / 2}, threshold=0.5, thresholded=("gt",))
    t = table.set_index(["scorer", "identity"])
    assert (t.loc["fair", "gap"] == 0).all() and (t.loc["fair", "bpsn_auc"] == 1).all()
    assert t.loc[("biased", "gay"), "bpsn_auc"] == 0.0
    assert t.loc[("biased", "Asian"), "bpsn_auc"] == 1.0
    assert t.loc[("gt", "gay"), "fpr"] == 1.0 and t.loc[("gt", "old"), "fpr"] == 0.0
    inh = IB.inheritance(table, "biased", "gt")
    assert inh["spearman"] == pytest.approx(1.0)


def test_identity_bias_negates_rewards_and_differences_the_first_two():
    df = IB.template_set(("gay", "Asian", "old", "deaf"))
    y = df.toxic.to_numpy().astype(float)
    rng = np.random.default_rng(0)
    emb = np.c_[y, rng.normal(size=len(y))]
    fa = lambda e: -e[:, 0]                     # rewards non-toxic text: no bias
    irl = lambda e: -e[:, 0] - 0.1 * e[:, 1]    # noisier
    out = IB.identity_bias(df, y * 0.9, {"fa_irl": fa, "irl": irl}, emb, threshold=0.5)
    assert out["per_identity"]["fa_irl"]["gay"]["bpsn_auc"] == 1.0
    assert out["gap_difference"]["arms"] == ["fa_irl", "irl"] and out["gap_difference"]["n_identities"] == 4
    assert out["gap_difference"]["value"] <= 0
