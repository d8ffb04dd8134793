"""The numbers the paper reports, in one place (the notebooks print ours beside them).

Sources in ``../shared/paper/failure-aware-irl.txt``: Table 1 (Pythia-410M preference test set,
mean +- std over seeds), Table 2 (disagreement, ME FA-IRL margin failures vs ME IRL), Table 3 (per
subtype; Detoxify labels), Section 6 / Figure 3 right (re-RLHF toxicity rates), Appendix E (sizes).
"""
from __future__ import annotations

# Table 1: method -> metric -> (mean, std)
TABLE1 = {
    "mm_irl": {"f1": (0.747, 0.006), "auc": (0.894, 0.001), "starc": (0.686, 0.002)},
    "me_irl": {"f1": (0.760, 0.007), "auc": (0.885, 0.002), "starc": (0.709, 0.003)},
    "mm_fa_gt": {"f1": (0.749, 0.007), "auc": (0.904, 0.002), "starc": (0.669, 0.007)},
    "me_fa_gt": {"f1": (0.757, 0.004), "auc": (0.909, 0.004), "starc": (0.628, 0.016)},
    "mm_fa_margin": {"f1": (0.770, 0.005), "auc": (0.898, 0.005), "starc": (0.850, 0.037)},
    "me_fa_margin": {"f1": (0.802, 0.005), "auc": (0.922, 0.001), "starc": (0.822, 0.011)},
}
# Table 2: split -> category -> count (train N = 1,000 pairs; Jigsaw "test" N = 10,000 as printed)
TABLE2 = {"train": {"both": 804, "only_fa": 109, "only_irl": 29, "neither": 58},
          "jigsaw": {"both": 7245, "only_fa": 1001, "only_irl": 457, "neither": 1297}}
# Table 3: split -> subtype -> (both, FA-IRL only, IRL only)
TABLE3 = {
    "train": {"obscene": (459, 70, 14), "threat": (22, 7, 3), "insult": (231, 29, 7), "identity_hate": (83, 12, 2)},
    "jigsaw": {"obscene": (4382, 496, 89), "threat": (108, 31, 24), "insult": (2528, 403, 155),
               "identity_hate": (250, 41, 18)},
}
# Section 6 / Figure 3 right: final toxicity rate after re-RLHF with each reward (SmolLM2-360M)
TNT_SHARE = 2 * 3619 / 20000  # Figure 3 (middle): 3,619 T->NT pairs in each of train and test, of 20,000 pairs
RERLHF_RATES = {"ground_truth": 0.04, "fa_irl": 0.06, "irl": 0.09}
# Appendix E: the four base-model sizes (millions of parameters) of Figure 5
SIZES_M = {"smollm2-135m": 135, "gemma3-270m": 270, "smollm2-360m": 360, "pythia-410m": 410}
