"""REPORT.md's section on why the numbers differ from the paper's, from notebook 05's blocks."""
from fairl_lib.analysis.report import why_numbers_differ


def test_why_numbers_differ_reads_pair_types_and_learning_curve():
    row = lambda acc, gt, n: {"pairwise_accuracy": acc, "gt_pairwise_accuracy": gt, "n_pairs": n}  # noqa: E731
    mets = {"01": {"kl_final": 0.43},
            "05": {"in_domain_by_pair_type": {"T->NT": {"me_irl": row(0.90, 1.0, 20), "me_fa_gt": row(0.80, 1.0, 20)},
                                              "NT->NT": {"me_irl": row(0.52, 0.55, 80), "me_fa_gt": row(0.50, 0.55, 80)}},
                   "jigsaw_learning_curve": {"n_tnt": [0, 100], "n_other": 300, "ground_truth_auc": 0.97,
                                             "methods": {"me_irl": {"mean": [0.70, 0.85]}}}}}
    inside, jig = why_numbers_differ(mets)
    assert "T->NT 20 (20%): rewards 0.80-0.90, ground truth 1.00" in inside
    assert "NT->NT 80 (80%): rewards 0.50-0.52, ground truth 0.55" in inside
    assert "0.43 nats" in inside
    assert "ROC-AUC 0.970" in jig and "0 -> 100 T->NT" in jig and "me_irl 0.700 -> 0.850" in jig
    assert why_numbers_differ({"01": {"kl_final": 0.4}}) == []
