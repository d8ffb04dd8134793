"""Small hand-made metrics blocks that more than one test file feeds to the schema or the ledger."""
from __future__ import annotations

# notebook 10, section 6 (stages.pair_audit.summary): the second paper's method on the reward's pairs
PAIR_METHOD = {"targets": {"n": 8, "by_source": {"expert": 8}},
               "explain": {"size_median": 3.0, "n_small": 8, "union_size": 20},
               "null": {"n": 8, "n_small": 7}, "overlap_nearest_method": 0,
               "unlearning": {"fa_irl": {"method": {"target_change": {"mean": -0.1}, "retain_mean_abs_change": 0.02},
                                         **{c: {"method_minus_control": {"mean": 0.0}}
                                            for c in ("random", "matched", "nearest")}},
                              "irl": {"method": {"target_change": {"mean": -0.1}}}}}
