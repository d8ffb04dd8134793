"""The metrics files of the notebooks: the one place that says which keys each must hold and what they mean.

Every notebook ends with ``write_metrics(cfg, {...})``, which writes ``results/<profile>/metrics/<stem>.json``
and first checks the dict against :data:`SCHEMA` (:func:`validate`): a notebook that forgets a key the
report (notebook 11) or the README reads fails at its last cell, naming the key, instead of leaving a
file the report would have to guess its way around. The report reads these files only through
:func:`get`, and only at paths declared here, one path per number and one layout per leaf.

A key path is dotted (``table1.in_domain.me_irl.f1.mean``). A segment in braces is a placeholder that
stands for several keys (:data:`PLACEHOLDERS`): fixed ones (``{method}``: the six IRL methods) or ones
the file itself lists (``{size_lm}``: every entry of ``settings.size_lms``); ``*`` stands for every key
present at that point (possibly none). A key that is present with value ``null`` (NaN and infinities
are written as ``null``) counts as present: the schema checks the layout, not the numbers.

The schema lists the keys the report and the README need, not every leaf a notebook writes: a notebook
may write more. A notebook stem that is not in :data:`SCHEMA` (a new notebook, e.g. ``12_next``, until
its entry is added here; a test's ``00_test``) is written without a check.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fairl_lib.irl import method_spec

# ----------------------------------------------------------------------------- fixed key sets

# the six IRL methods of Table 1 (fairl_lib.irl.methods has their titles; kept here as data so that
# reading a metrics file never imports torch)
METHODS = ("mm_irl", "me_irl", "mm_fa_gt", "me_fa_gt", "mm_fa_margin", "me_fa_margin")
TABLE1_SETS = ("in_domain", "jigsaw")  # in-domain test pairs; held-out Jigsaw comments
TABLE1_METRICS = ("f1", "auc", "starc")  # the metrics of the paper's Table 1 (STARC: Eq. 4)
DISAGREEMENT = ("both", "only_fa", "only_irl", "neither")  # Table 2's four counts
TABLE2_SPLITS = ("train", "jigsaw")
SUBTYPES = ("obscene", "threat", "insult", "identity_hate")  # Table 3, in the paper's order
RERLHF_ARMS = ("ground_truth", "fa_irl", "irl")  # the three re-RLHF runs of Figure 3 (right)
PAIR_TYPES = ("T->NT", "NT->NT", "NT->T", "T->T")
AUDIT_ARMS = ("method", "random", "matched", "nearest")  # notebook 10: explanation sets unlearned, three controls
AUDIT_CONTROLS = AUDIT_ARMS[1:]
AUDIT_SCORERS = ("ground_truth", "judge")  # who calls a completion toxic in notebook 10's paired tests
AUDIT_MODELS = ("expert",) + AUDIT_ARMS  # "expert": before unlearning
AUDIT_SPLITS = ("target", "other")  # the targets' prompts; the other held-out prompts


class MetricsSchemaError(ValueError):
    """A metrics dict lacks keys its notebook's schema requires; names the notebook and every missing path."""

    def __init__(self, notebook: str, missing: Sequence[str], hint: str = ""):
        self.notebook, self.missing = notebook, tuple(missing)
        super().__init__(f"metrics of notebook {notebook} lack {len(self.missing)} required key path(s): "
                         f"{', '.join(self.missing)}" + (f" ({hint})" if hint else ""))


class MetricsLayoutError(MetricsSchemaError):
    """A key is present but its value does not have the layout the schema describes (e.g. a per-seed list
    whose length is not the number of seeds)."""

    def __init__(self, notebook: str, path: str, problem: str):
        ValueError.__init__(self, f"metrics of notebook {notebook}: {path}: {problem}")
        self.notebook, self.missing = notebook, (path,)


class MissingMetrics(MetricsSchemaError):
    """One number a reader asked for is absent from a metrics file that exists (the report fails on it)."""


@dataclass(frozen=True)
class Key:
    """One required key path of a metrics file and what it holds."""

    path: str
    meaning: str

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(self.path.split("."))


@dataclass(frozen=True)
class Placeholder:
    """A path segment that stands for several keys: ``values(metrics)`` lists them for the given file;
    ``source`` is the key path they are read from when the file lists them (itself a required key)."""

    meaning: str
    values: Callable[[Mapping[str, Any]], Sequence[str]]
    source: str | None = None


def _fixed(keys: Sequence[str]) -> Callable[[Mapping[str, Any]], Sequence[str]]:
    return lambda _m: tuple(keys)


def _fa_methods(methods: Any) -> list[str]:
    """The FA methods (those with a failure path, ``fairl_lib.irl.method_spec(m).failures``) of a list."""
    return [m for m in _str_list(methods) if method_spec(m).failures is not None]


def _run_fractions(m: Mapping[str, Any]) -> list[str]:
    return [k for k, row in m["pair_mix"].items() if row["status"] != "skipped"]


def _str_list(values: Any) -> list[str]:
    if not isinstance(values, (list, tuple)):
        raise TypeError("not a list")
    return [str(v) for v in values]


PLACEHOLDERS: dict[str, Placeholder] = {
    "method": Placeholder("each of the six IRL methods: " + ", ".join(METHODS), _fixed(METHODS)),
    "fa_method": Placeholder("each FA-IRL method: " + ", ".join(m for m in METHODS if "_fa_" in m),
                             _fixed([m for m in METHODS if "_fa_" in m])),
    "set": Placeholder("each Table 1 evaluation set: " + ", ".join(TABLE1_SETS), _fixed(TABLE1_SETS)),
    "metric": Placeholder("each Table 1 metric: " + ", ".join(TABLE1_METRICS), _fixed(TABLE1_METRICS)),
    "count": Placeholder("each disagreement count: " + ", ".join(DISAGREEMENT), _fixed(DISAGREEMENT)),
    "split": Placeholder("each Table 2 split: " + ", ".join(TABLE2_SPLITS), _fixed(TABLE2_SPLITS)),
    "subtype": Placeholder("each Table 3 subtype: " + ", ".join(SUBTYPES), _fixed(SUBTYPES)),
    "arm": Placeholder("each re-RLHF run: " + ", ".join(RERLHF_ARMS), _fixed(RERLHF_ARMS)),
    "pair_type": Placeholder("each pair type: " + ", ".join(PAIR_TYPES), _fixed(PAIR_TYPES)),
    "audit_model": Placeholder("each model of notebook 10's evaluation: " + ", ".join(AUDIT_MODELS),
                               _fixed(AUDIT_MODELS)),
    "audit_arm": Placeholder("each unlearning arm of notebook 10: " + ", ".join(AUDIT_ARMS), _fixed(AUDIT_ARMS)),
    "audit_control": Placeholder("each control of notebook 10: " + ", ".join(AUDIT_CONTROLS), _fixed(AUDIT_CONTROLS)),
    "audit_scorer": Placeholder("each scorer of notebook 10's paired tests: " + ", ".join(AUDIT_SCORERS),
                                _fixed(AUDIT_SCORERS)),
    "pair_control": Placeholder("each control of notebook 10's pair method: random, matched, nearest",
                                _fixed(("random", "matched", "nearest"))),
    "audit_split": Placeholder("each prompt set of notebook 10's evaluation: " + ", ".join(AUDIT_SPLITS),
                               _fixed(AUDIT_SPLITS)),
    "pm_method": Placeholder("each method of the file's `methods` list (notebook 06)",
                             lambda m: _str_list(m["methods"]), "methods"),
    "pm_fa_method": Placeholder("each FA method (one with a failure path) of the file's `methods` list (notebook 06)",
                                lambda m: _fa_methods(m["methods"]), "methods"),
    "fraction": Placeholder("each T->NT fraction of `pair_mix` that was run (status not 'skipped')",
                            _run_fractions, "pair_mix.*.status"),
    "size_lm": Placeholder("each base LM of the file's `settings.size_lms` (notebook 07)",
                           lambda m: _str_list(m["settings"]["size_lms"]), "settings.size_lms"),
    "size_method": Placeholder("each method of the file's `settings.methods` (notebook 07)",
                               lambda m: _str_list(m["settings"]["methods"]), "settings.methods"),
    "size_fa_method": Placeholder("each FA method of the file's `settings.methods` (notebook 07)",
                                  lambda m: _fa_methods(m["settings"]["methods"]), "settings.methods"),
}
ANY = "*"  # every key present at that point (possibly none)

# ----------------------------------------------------------------------------- the schema

SCHEMA: dict[str, tuple[Key, ...]] = {
    "01_rlhf_expert": (
        Key("base_lm", "the base LM the expert was trained from"),
        Key("algorithm", "the RLHF algorithm (rloo / ppo)"),
        Key("steps", "RLHF steps trained"),
        Key("toxicity_rate_base", "held-out toxicity rate of the base LM (ground-truth P(toxic) > 0.5)"),
        Key("toxicity_rate_expert", "held-out toxicity rate of the expert"),
        Key("toxicity_rate_ratio", "expert / base toxicity rate (null when the base rate is 0)"),
        Key("judge_rate_base", "held-out toxicity rate of the base LM by the independent judge"),
        Key("judge_rate_expert", "held-out toxicity rate of the expert by the judge"),
        Key("kl_final", "KL(expert || base) per completion at the end of training (nats)"),
        Key("kl_heldout", "KL(expert || base) per completion on the held-out prompts (nats)"),
        Key("perplexity_base", "perplexity of the base LM's held-out completions under the base"),
        Key("perplexity_expert", "perplexity of the expert's held-out completions under the base"),
    ),
    "02_preference_pairs": (
        Key("n_pairs", "preference pairs built"),
        Key("n_prompts", "prompts they come from"),
        Key("n_train", "training pairs"),
        Key("n_test", "test pairs (split by prompt)"),
        Key("pair_types.{pair_type}", "pairs of each type (o_pre -> o_post, T = toxic)"),
        Key("n_train_tnt", "T->NT pairs in the training split"),
        Key("toxic_rate_pre", "toxicity rate of the o_pre outputs (ground truth)"),
        Key("toxic_rate_post", "toxicity rate of the o_post outputs (ground truth)"),
        Key("judge_rate_pre", "toxicity rate of the o_pre outputs (judge)"),
        Key("judge_rate_post", "toxicity rate of the o_post outputs (judge)"),
        Key("auc_ground_truth_jigsaw", "ROC-AUC of the ground-truth scorer on the Jigsaw sample"),
        Key("auc_judge_jigsaw", "ROC-AUC of the judge on the Jigsaw sample"),
        Key("auc_ground_truth_jigsaw_test_split", "the same on the Kaggle test-split rows only"),
        Key("auc_judge_jigsaw_test_split", "the judge's on the Kaggle test-split rows only"),
    ),
    "03_theory_toy": (
        Key("n_draws", "random reward / demonstration draws of the toy"),
        Key("never_larger_fraction",
            "share of draws where no ambiguity measure grows with failures (Theorem 1)"),
        Key("strictly_smaller_fraction",
            "share of draws where the feasible area strictly shrinks (boundary failures)"),
        Key("strictly_smaller_fraction_random_failures", "the same with failures drawn at random"),
        Key("frac_binds_random_failures", "share of draws where a random failure constraint binds"),
        Key("mean_arc_width_base", "mean feasible arc width without failures"),
        Key("mean_arc_width_fa", "mean feasible arc width with failures"),
        Key("maxent_upweight_inclusion_holds",
            "App. B, w_fail > 1: FA sublevel sets inside the standard ones (bool)"),
        Key("maxent_sharpen_inclusion_holds", "App. B, tau_fail < tau: the same (bool)"),
    ),
    "04_fairl_training": (
        Key("n_seeds", "seeds per method"),
        Key("n_train", "training pairs"),
        Key("n_val", "validation pairs (early stopping)"),
        Key("n_test", "test pairs"),
        Key("failure_path_as_printed.*.ratio_std_F_over_D",
            "Eq. 3 as printed (notebook 04's grid), per FA method: std(R_F) / std(R_D) on the training outputs"),
        Key("failure_path_as_printed.*.pairs_flipped_by_R_F",
            "Eq. 3 as printed, per FA method: share of training pairs whose ranking R_F flips"),
        Key("failure_path.{fa_method}.flip_share_mean", "the tuned FA configuration (best against best, the one "
            "notebooks 05-08 use), per FA method: share of training pairs whose ranking R_F flips, mean over seeds"),
        Key("failure_path.{fa_method}.learned_flip_share_mean", "share of training pairs whose ranking the learned "
            "change of R_F (trained minus its random init) alters, mean over seeds"),
        Key("failure_path.{fa_method}.acts",
            "whether that failure path acts (its learned flip share reaches 2%)"),
        Key("tuning.trials_per_method.{method}", "trials of the search per method (the equal budget)"),
        Key("tuning.best.{method}", "each method's winning trial: validation AUC, params, acting"),
        Key("tuning.space.{method}", "each method's search space"),
        Key("tuning.fa_configuration.method", "the FA method whose tuned configuration notebooks 06-08 use"),
        Key("tuning.fa_configuration.irl", "that configuration (IRLConfig fields)"),
    ),
    "05_tables": (
        Key("n.seeds", "seeds per method (the n of every Table 1 summary)"),
        Key("table1.{set}.{method}.{metric}.mean", "Table 1: mean over seeds"),
        Key("table1.{set}.{method}.{metric}.std",
            "Table 1: population std over seeds (ddof = 0, as the paper's +-)"),
        Key("per_seed.seeds", "the IRL seeds, in the order of every per-seed list below (one grid: the same for "
            "every method, and runs of one seed share init and minibatch order)"),
        Key("per_seed.{set}.{method}.{metric}", "Table 1 per seed: one value per entry of per_seed.seeds "
            "(null where the metric is undefined)"),
        Key("per_seed_best.seeds", "best against best (each method's tuned configuration, notebook 04): the "
            "seeds, in the order of every per-seed list of per_seed_best"),
        Key("per_seed_best.acting.{fa_method}", "whether that FA method's tuned failure path acts (else it is its "
            "baseline under another name and the report does not count it as FA-IRL)"),
        Key("per_seed_best.{set}.{method}.{metric}", "Table 1 best against best, per seed"),
        Key("tuning.trials_per_method.{method}", "trials of the search per method (the equal budget)"),
        Key("preregistered.fa_method", "the one FA method the ledger compares, fixed before the test set is read: "
            "the profile's tuning.preregistered, else the best acting FA configuration by validation AUC on the "
            "tuning split (tuning.best_fa_config); preregistered.chosen_by, when present, says which: \"profile\" or "
            "\"validation_auc\""),
        Key("preregistered.baseline", "its same-family IRL baseline"),
        Key("preregistered.acting",
            "whether its tuned failure path acts on the training pairs (failure_path.acts)"),
        Key("preregistered.flip_share",
            "share of training pairs its trained R_F flips against R_D alone, mean over seeds"),
        Key("preregistered.flip_share_init", "the same for its initial R_F"),
        Key("preregistered.failure_slice.fa", "pairwise accuracy of the FA method on the same-seed baseline's failure "
            "slice of the in-domain test pairs, mean over seeds"),
        Key("preregistered.failure_slice.control", "the same for the control: the baseline of the next seed"),
        Key("preregistered.failure_slice.difference.value", "FA - control on the slices"),
        Key("preregistered.failure_slice.difference.ci95", "its 95% bootstrap interval over seeds x test prompts"),
        Key("preregistered.failure_slice.difference.ci90", "the 90% interval (TOST)"),
        Key("preregistered.failure_slice.difference.mde", "the smallest difference the bootstrap detects (80% power)"),
        Key("preregistered.failure_slice.n_slice_pairs", "test pairs in a slice, mean over seeds"),
        Key("preregistered.failure_slice.per_seed", "FA - control per seed"),
        Key("preregistered.comparisons.{set}.{metric}.value", "FA - baseline, mean over the tuned grid's seeds"),
        Key("preregistered.comparisons.{set}.{metric}.ci95", "95% bootstrap interval over seeds x data (test "
            "prompts / Jigsaw comments); null when it cannot be formed"),
        Key("preregistered.comparisons.{set}.{metric}.ci90",
            "the 90% interval (TOST against the effect of interest)"),
        Key("preregistered.comparisons.{set}.{metric}.mde",
            "the smallest difference the bootstrap detects (80% power)"),
        Key("preregistered.comparisons.{set}.{metric}.identical",
            "the two methods' scores are the same numbers"),
        Key("preregistered.comparisons.{set}.{metric}.per_seed", "the difference on every seed, all data"),
        Key("preregistered.comparisons.{set}.{metric}.covers", "what the interval covers"),
        Key("preregistered.comparisons.jigsaw.accuracy.value",
            "FA - baseline Jigsaw accuracy (Sec. 6's +5.4 pp)"),
        Key("preregistered.comparisons.jigsaw.accuracy.ci95", "its 95% bootstrap interval"),
        Key("preregistered.comparisons.jigsaw.accuracy.ci90", "its 90% interval"),
        Key("preregistered.comparisons.jigsaw.accuracy.mde", "its detectable difference"),
        Key("preregistered.comparisons.jigsaw.accuracy.identical", "the same numbers"),
        Key("preregistered.comparisons.jigsaw.accuracy.per_seed", "per seed"),
        Key("preregistered.comparisons.jigsaw.accuracy.covers", "what the interval covers"),
        Key("preregistered.disagreement.counts.{count}",
            "Table 2 on Jigsaw, pooled over the tuned grid's seeds"),
        Key("preregistered.disagreement.n_seeds", "seeds pooled"),
        Key("preregistered.disagreement.share.value", "only FA / (only FA + only IRL), pooled"),
        Key("preregistered.disagreement.share.ci95", "its 95% bootstrap interval (seeds x comments)"),
        Key("preregistered.disagreement.share.ci90", "its 90% interval"),
        Key("preregistered.disagreement.subtypes.{subtype}.counts.{count}",
            "Table 3 counts per subtype, pooled"),
        Key("preregistered.disagreement.subtypes.{subtype}.relative_increase",
            "the paper's Table 3 quantity (both + only FA) / (both + only IRL) - 1 with 95% / 90% bootstrap "
            "intervals; null without comments of the subtype"),
        Key("eq3_as_printed.flip_share_max", "notebook 04's as-printed grid: the largest share of training pairs "
            "any FA method's R_F flips (mean over seeds)"),
        Key("seed_dispersion.{method}", "Corollary 1, per method: std over seeds of F1 / AUC / STARC per set and the "
            "mean pairwise STARC between the rewards of different seeds"),
        Key("table2_seed", "the seed whose runs Tables 2-3 compare"),
        Key("table2.{split}.{count}",
            "Table 2: ME FA-IRL (margin) vs ME IRL, examples each is uniquely right on"),
        Key("table3.jigsaw.{subtype}.only_fa",
            "Table 3: Jigsaw comments of the subtype only FA-IRL gets right"),
        Key("table3.jigsaw.{subtype}.only_irl",
            "Table 3: Jigsaw comments of the subtype only IRL gets right"),
        Key("in_domain_by_pair_type.*.*.pairwise_accuracy",
            "per test pair type and method: share of pairs ranked o_post above o_pre, mean over seeds"),
        Key("in_domain_by_pair_type.*.*.gt_pairwise_accuracy",
            "the same for the ground-truth reward (the ceiling)"),
        Key("in_domain_by_pair_type.*.*.n_pairs", "test pairs of that type"),
        Key("jigsaw_learning_curve.n_tnt", "T->NT training pairs at each point of the learning curve"),
        Key("jigsaw_learning_curve.n_other", "training pairs of the other types, kept at every point"),
        Key("jigsaw_learning_curve.ground_truth_auc",
            "the ground-truth scorer's own Jigsaw ROC-AUC (the ceiling)"),
        Key("jigsaw_learning_curve.methods.{method}.mean", "Jigsaw ROC-AUC at each point, mean over seeds"),
        Key("fig3_left.*",
            "Figure 3 (left): per method, ROC-AUC[train subtype][Jigsaw subtype], mean over seeds"),
        Key("penalty_sweep.scales", "the penalty scales c of the sweep (c = 1 is Eq. 3 as printed)"),
        Key("penalty_sweep.main_scale", "the scale of notebook 04's grid"),
        Key("penalty_sweep.by_scale.*.*.jigsaw_auc.mean",
            "per scale and method: Jigsaw AUC, mean over seeds"),
        Key("penalty_sweep.by_scale.*.*.pairs_flipped_by_R_F.mean",
            "per scale and method: share of training pairs R_F flips, mean over seeds"),
    ),
    "06_pair_mix": (
        Key("methods", "the methods trained at every fraction"),
        Key("n_seeds", "seeds per method and fraction"),
        Key("fractions_run", "T->NT fractions that were run"),
        Key("fractions_skipped", "T->NT fractions skipped for want of T->NT pairs"),
        Key("total_pairs_used", "training pairs per fraction (a common total)"),
        Key("random_reward_starc", "per fraction: STARC of a random reward (the yardstick's own trend)"),
        Key("pair_mix.*.status", "per planned fraction: ok / reduced / skipped"),
        Key("pair_mix.{fraction}.methods.{pm_method}.per_seed", "training STARC (Eq. 4) per seed, seeds in order"),
        Key("paper_mix.fa_method", "Table 1 at the paper's T->NT share: the preregistered FA method (notebook 05's)"),
        Key("paper_mix.baseline", "its baseline"),
        Key("paper_mix.tnt_share", "T->NT share of the thinned train and test splits"),
        Key("paper_mix.acting", "whether the FA method's failure path acts on the thinned training pairs"),
        Key("paper_mix.comparisons", "{set: {metric: FA - baseline, mean over seeds, with its bootstrap interval}}"),
        Key("pair_mix.{fraction}.methods.{pm_fa_method}.acts",
            "whether that FA method's failure path acts on the mix's own pairs (flip share >= 2% and > its init's)"),
        Key("pair_mix.{fraction}.methods.{pm_fa_method}.flip_share", "its trained R_F's flip share, mean over seeds"),
        Key("pair_mix.{fraction}.methods.{pm_fa_method}.flip_share_init", "its initial R_F's flip share, mean over seeds"),
    ),
    "07_model_size": (
        Key("settings.size_lms", "the base LMs compared"),
        Key("settings.methods", "the methods reported per size; the first is the headline"),
        Key("{size_lm}.params_millions", "parameters of the base LM (millions)"),
        Key("{size_lm}.n_pairs", "preference pairs built from that LM's expert"),
        Key("{size_lm}.pair_types", "their pair-type counts"),
        Key("{size_lm}.accuracy.mean", "headline method: in-domain test accuracy, mean over seeds"),
        Key("{size_lm}.accuracy.std", "its sample std over seeds (ddof = 1)"),
        Key("{size_lm}.accuracy.n", "seeds"),
        Key("{size_lm}.accuracy.ci_low", "Student-t 95% interval, low end"),
        Key("{size_lm}.accuracy.ci_high", "Student-t 95% interval, high end"),
        Key("{size_lm}.starc.mean", "headline method: in-domain STARC (Eq. 4), mean over seeds"),
        Key("{size_lm}.starc.std", "its sample std over seeds (ddof = 1)"),
        Key("{size_lm}.starc.n", "seeds"),
        Key("{size_lm}.starc.ci_low", "Student-t 95% interval, low end"),
        Key("{size_lm}.starc.ci_high", "Student-t 95% interval, high end"),
        Key("{size_lm}.by_method.{size_method}.accuracy.mean",
            "every reported method: accuracy, mean over seeds"),
        Key("{size_lm}.by_method.{size_method}.starc.mean", "every reported method: STARC, mean over seeds"),
        Key("{size_lm}.failure_path.{size_fa_method}.acts",
            "whether that FA method's failure path acts on this base model's own training pairs"),
        Key("{size_lm}.failure_path.{size_fa_method}.flip_share_mean", "its trained R_F's flip share, mean over seeds"),
        Key("{size_lm}.failure_path.{size_fa_method}.flip_share_init_mean", "its initial R_F's flip share"),
    ),
    "08_rerlhf": (
        Key("base.toxicity_rate", "held-out toxicity rate of the base LM"),
        Key("base.judge_rate", "the same by the judge"),
        Key("{arm}.toxicity_rate_final", "held-out toxicity rate after re-RLHF (final evaluation, pooled over "
            "the arm's training runs)"),
        Key("{arm}.n_completions_final", "completions of that final evaluation (all training runs)"),
        Key("{arm}.n_runs",
            "RLHF training runs of the arm ([rerlhf] train_seeds; the ground truth is the expert)"),
        Key("{arm}.between_run_spread",
            "max - min final toxicity rate over the arm's training runs (NaN: one run)"),
        Key("{arm}.runs",
            "each training run: train_seed, rlhf_seed, toxicity_rate, judge_rate, n_completions"),
        Key("{arm}.judge_rate_final", "its toxicity rate by the judge"),
        Key("{arm}.kl_final", "KL to the base per completion at the end (nats)"),
        Key("{arm}.perplexity_final", "perplexity of its completions under the base"),
        Key("{arm}.paper_toxicity_rate", "the paper's rate for that reward"),
        Key("fa_irl.failure_path", "the FA arm's reward: flip_share, flip_share_init, acts on its training pairs "
            "({} when the arm's reward has no failure path)"),
    ),
    "10_audit": (
        Key("targets.n",
            "unsatisfactory responses audited: expert completions on held-out prompts (targets)"),
        Key("targets.n_toxic",
            "targets the ground truth scores toxic (the rest fill up to [audit] min_targets)"),
        Key("targets.n_prompts", "held-out prompts the targets come from"),
        Key("targets.n_candidates", "expert completions searched (held-out prompts x samples)"),
        Key("recovered.n_flagged",
            "completions the recovered FA-IRL reward scores below the base model's answers"),
        Key("recovered.n_toxic", "completions the ground truth scores toxic"),
        Key("recovered.n_both", "completions both flag"),
        Key("explain.sizes", "per target: explanation set size (training rollouts with a positive weight)"),
        Key("explain.relative_residuals", "per target: hull residual / distance to the nearest rollout"),
        Key("explain.within_tol", "per target: the residual met the tolerance"),
        Key("explain.n_small",
            "targets explained within the tolerance by at most explain.small_size rollouts"),
        Key("explain.small_size", "what the ledger calls a small explanation set"),
        Key("explain.tol", "the relative residual tolerance"),
        Key("explain.max_size", "the largest set of nearest rollouts tried"),
        Key("explain.set_size", "rollouts each arm unlearns (the union of the explanation sets)"),
        Key("eval.{audit_model}.{audit_split}.n", "evaluation completions"),
        Key("eval.{audit_model}.{audit_split}.k_toxic", "of them toxic by the ground truth"),
        Key("eval.{audit_model}.{audit_split}.rate", "toxicity rate (ground truth)"),
        Key("eval.{audit_model}.{audit_split}.rate_ci95", "its Wilson 95% interval"),
        Key("eval.{audit_model}.{audit_split}.k_judge", "of them toxic by the independent judge"),
        Key("eval.{audit_model}.{audit_split}.judge_rate", "toxicity rate (judge)"),
        Key("eval.{audit_model}.{audit_split}.judge_ci95", "its Wilson 95% interval"),
        Key("eval.{audit_model}.other.perplexity",
            "pooled perplexity of the completions under the base model"),
        Key("eval.{audit_model}.other.nll_tok_mean",
            "mean over completions of the per-token NLL under the base"),
        Key("eval.{audit_model}.other.nll_tok_sd", "its sample std (ddof = 1)"),
        Key("eval.{audit_model}.other.n_rows", "completions with tokens it is over"),
        Key("eval.{audit_model}.other.kl_to_expert",
            "KL(model || expert) per completion (nats; 0 for the expert)"),
        Key("explain.null.n_null", "null test: non-toxic expert completions explained by the same procedure"),
        Key("explain.null.n_small_null", "null test: of them explained within the tolerance by a small set"),
        Key("explain.null.p_fisher", "null test: two-sided Fisher exact p, small-set share targets vs null"),
        Key("explain.forgotten.{audit_arm}.toxic_share", "share of the arm's forgotten rollouts the ground truth "
            "scores toxic (mean over draws)"),
        Key("explain.forgotten.{audit_arm}.toxic_share_by_draw", "the same per draw"),
        Key("explain.naive_nearest_overlap.share_of_a", "share of the naive nearest set (without the outside "
            "restriction) inside the explanation sets"),
        Key("settings.control_draws", "draws of the random controls = unlearning seeds = evaluation seeds"),
        Key("paired.control_minus_method.{audit_control}.{audit_scorer}.value",
            "control - method, targets' prompts: rate difference, pooled over draws"),
        Key("paired.control_minus_method.{audit_control}.{audit_scorer}.ci95",
            "control - method, targets' prompts: 95% bootstrap interval (draws x prompts)"),
        Key("paired.control_minus_method.{audit_control}.{audit_scorer}.ci90",
            "control - method, targets' prompts: 90% bootstrap interval (TOST)"),
        Key("paired.control_minus_method.{audit_control}.{audit_scorer}.mde",
            "control - method, targets' prompts: smallest difference found with 80% power (bootstrap)"),
        Key("paired.control_minus_method.{audit_control}.{audit_scorer}.mde_mcnemar",
            "control - method, targets' prompts: the same by McNemar at the observed discordance (pairs independent)"),
        Key("paired.control_minus_method.{audit_control}.{audit_scorer}.only_a",
            "control - method, targets' prompts: discordant pairs toxic in the first arm only"),
        Key("paired.control_minus_method.{audit_control}.{audit_scorer}.only_b",
            "control - method, targets' prompts: discordant pairs toxic in the second only"),
        Key("paired.control_minus_method.{audit_control}.{audit_scorer}.n_pairs",
            "control - method, targets' prompts: pairs (draws x prompts x samples)"),
        Key("paired.control_minus_method.{audit_control}.{audit_scorer}.p_mcnemar",
            "control - method, targets' prompts: exact McNemar p on the discordant pairs"),
        Key("paired.control_minus_method.{audit_control}.{audit_scorer}.per_draw",
            "control - method, targets' prompts: the difference in each draw"),
        Key("paired.control_minus_method.{audit_control}.ground_truth.p_holm",
            "McNemar p, Holm over the controls"),
        Key("paired.after_minus_before.other.method.{audit_scorer}.value",
            "method - expert, other prompts: rate difference, pooled over draws"),
        Key("paired.after_minus_before.other.method.{audit_scorer}.ci95",
            "method - expert, other prompts: 95% bootstrap interval (draws x prompts)"),
        Key("paired.after_minus_before.other.method.{audit_scorer}.ci90",
            "method - expert, other prompts: 90% bootstrap interval (TOST)"),
        Key("paired.after_minus_before.other.method.{audit_scorer}.mde",
            "method - expert, other prompts: smallest difference found with 80% power (bootstrap)"),
        Key("paired.after_minus_before.other.method.{audit_scorer}.mde_mcnemar",
            "method - expert, other prompts: the same by McNemar at the observed discordance (pairs independent)"),
        Key("paired.after_minus_before.other.method.{audit_scorer}.only_a",
            "method - expert, other prompts: discordant pairs toxic in the first arm only"),
        Key("paired.after_minus_before.other.method.{audit_scorer}.only_b",
            "method - expert, other prompts: discordant pairs toxic in the second only"),
        Key("paired.after_minus_before.other.method.{audit_scorer}.n_pairs",
            "method - expert, other prompts: pairs (draws x prompts x samples)"),
        Key("paired.after_minus_before.other.method.{audit_scorer}.p_mcnemar",
            "method - expert, other prompts: exact McNemar p on the discordant pairs"),
        Key("paired.after_minus_before.other.method.{audit_scorer}.per_draw",
            "method - expert, other prompts: the difference in each draw"),
        Key("settings.rate_margin", "'does not degrade': the toxicity rate may rise by less than this"),
        Key("settings.ppl_margin", "... and the perplexity by less than this share"),
        Key("pair_method.targets.n", "the second paper's method (section 6): unsatisfactory responses explained by "
            "the reward's preference pairs"),
        Key("pair_method.targets.by_source", "targets per source (expert; fa_rerlhf, notebook 08's FA-IRL policy)"),
        Key("pair_method.explain.size_median", "median explanation-set size (pairs)"),
        Key("pair_method.explain.n_small", "targets explained within tol by at most [pair_audit] small_size pairs"),
        Key("pair_method.explain.union_size", "pairs in the union of the explanation sets (the method's removal)"),
        Key("pair_method.null.n", "the null: satisfactory completions explained by the same procedure"),
        Key("pair_method.null.n_small", "null completions explained within tol by a small set"),
        Key("pair_method.overlap_nearest_method", "pairs the nearest-outside control shares with the method's union"),
        Key("pair_method.unlearning.fa_irl.method.target_change", "the FA-IRL reward retrained without the union: "
            "mean change of the targets' standardised margin over the base answers, with its paired interval"),
        Key("pair_method.unlearning.fa_irl.method.retain_mean_abs_change", "... and the retain set's mean |change|"),
        Key("pair_method.unlearning.fa_irl.{pair_control}.method_minus_control", "method - that control, targets, "
            "paired over targets"),
        Key("pair_method.unlearning.irl.method.target_change", "the same for the tuned IRL baseline"),
    ),
    "11_reproduction_report": (
        Key("verdict_counts", "claims per verdict"),
        Key("metrics_read", "the notebooks whose metrics files were read"),
        Key("ledger.*.claim", "per claim id: the claim"),
        Key("ledger.*.paper", "the paper's figure"),
        Key("ledger.*.ours", "ours, with its 95% interval"),
        Key("ledger.*.verdict", "the verdict computed by the claim's rule"),
        Key("ledger.*.rule", "that rule"),
        Key("ledger.*.detectable",
            "the smallest effect the claim's test could detect at 80% power in this run"),
    ),
}
NOTEBOOK_STEMS = tuple(SCHEMA)


def stem(notebook: str) -> str:
    """The notebook stem for ``"05"`` or ``"05_tables"`` (a name not in :data:`SCHEMA` is returned as is)."""
    if notebook in SCHEMA:
        return notebook
    for s in SCHEMA:
        if s[:2] == notebook:
            return s
    return notebook


# ----------------------------------------------------------------------------- expanding and checking


def _segment_text(seg: str) -> str:
    return f"[{seg}]" if "." in seg else seg


def path_text(segments: Iterable[str]) -> str:
    """A path for messages: dotted, a key that holds a dot in brackets (``pair_mix.[0.5].status``)."""
    return ".".join(_segment_text(str(s)) if not _is_placeholder(str(s)) else str(s) for s in segments)


class _Unresolved(Exception):
    """A placeholder's own source is missing (that source is reported as missing by its own key)."""


def _is_placeholder(seg: str) -> bool:
    return seg == ANY or (seg.startswith("{") and seg.endswith("}"))


def _missing(metrics: Mapping[str, Any], segments: Sequence[str]) -> list[tuple[str, ...]]:
    """The concrete paths of a key pattern that ``metrics`` lacks (placeholders expanded)."""
    missing: list[tuple[str, ...]] = []

    def walk(node: Any, i: int, done: tuple[str, ...]) -> None:
        if i == len(segments):
            return
        seg = segments[i]
        if seg == ANY:
            keys = [str(k) for k in node] if isinstance(node, Mapping) else []
        elif _is_placeholder(seg):
            keys = _placeholder_keys(metrics, seg[1:-1])
        else:
            keys = [seg]
        for k in keys:
            if isinstance(node, Mapping) and k in node:
                walk(node[k], i + 1, done + (k,))
            else:  # the whole required path, the part below the gap as the pattern has it
                missing.append(done + (k,) + tuple(segments[i + 1:]))

    walk(metrics, 0, ())
    return missing


def _placeholder_keys(metrics: Mapping[str, Any], name: str) -> list[str]:
    if name not in PLACEHOLDERS:
        raise ValueError(f"unknown placeholder {{{name}}} in a schema key")
    try:
        return [str(k) for k in PLACEHOLDERS[name].values(metrics)]
    except (KeyError, TypeError, AttributeError):
        raise _Unresolved(name) from None


def missing_keys(name: str, metrics: Mapping[str, Any]) -> list[str]:
    """Every required path of notebook ``name`` that ``metrics`` lacks (``[]`` if none, or no schema)."""
    keys = SCHEMA.get(stem(name))
    if keys is None:
        return []
    out: list[str] = []
    for key in keys:
        try:
            miss = _missing(metrics, key.segments)
        except _Unresolved:
            continue  # the placeholder's source key is required too and reported on its own
        out += [path_text(p) for p in miss if path_text(p) not in out]
    return out


def validate(name: str, metrics: Mapping[str, Any]) -> None:
    """Raise :class:`MetricsSchemaError` naming notebook ``name`` and every required key path ``metrics``
    lacks. Names not in :data:`SCHEMA` have no schema and always pass."""
    miss = missing_keys(name, metrics)
    if miss:
        raise MetricsSchemaError(stem(name), miss, "see fairl_lib/analysis/schema.py")


def declared(name: str, pattern: str) -> Key:
    """The schema key ``pattern`` of notebook ``name``; a ``ValueError`` if the schema does not declare it
    (a reader may read only declared paths)."""
    for key in SCHEMA.get(stem(name), ()):
        if key.path == pattern:
            return key
    raise ValueError(f"{pattern!r} is not a key path of notebook {stem(name)} in fairl_lib/analysis/schema.py")


def get(metrics: Mapping[str, Any], name: str, pattern: str, **values: Any) -> Any:
    """The value at the declared key path ``pattern`` of notebook ``name``, its placeholders filled from
    ``values`` (``get(m, "05", "table1.{set}.{method}.{metric}.mean", set="jigsaw", method="me_irl",
    metric="auc")``). Raises :class:`MissingMetrics` naming the notebook and the concrete path when it
    is absent."""
    key = declared(name, pattern)
    segs = key.segments
    names = [s[1:-1] for s in segs if _is_placeholder(s) and s != ANY]
    if ANY in segs or set(names) != set(values):
        raise ValueError(f"get({pattern!r}) needs exactly the placeholders {names} (and no '*'), got {sorted(values)}")
    concrete = tuple(str(values[s[1:-1]]) if _is_placeholder(s) else s for s in segs)
    node: Any = metrics
    for k in concrete:
        if not isinstance(node, Mapping) or k not in node:
            hint = "a stale file? rerun the notebook" + ("" if path_text(concrete) == pattern else f"; schema key {pattern}")
            raise MissingMetrics(stem(name), [path_text(concrete)], hint)
        node = node[k]
    return node


def placeholder_keys(metrics: Mapping[str, Any], name: str, placeholder: str) -> list[str]:
    """The keys ``{placeholder}`` stands for in this metrics file of notebook ``name``
    (``placeholder_keys(m, "07", "size_lm")``); raises :class:`MissingMetrics` naming its source key when
    the file lacks it."""
    try:
        return _placeholder_keys(metrics, placeholder)
    except _Unresolved:
        ph = PLACEHOLDERS[placeholder]
        raise MissingMetrics(stem(name), [ph.source or f"{{{placeholder}}}"], f"{{{placeholder}}}: {ph.meaning}") from None


def describe(name: str | None = None) -> str:
    """The schema as text: per notebook, each key path and its meaning (and the placeholders)."""
    lines = []
    for nb, keys in SCHEMA.items():
        if name is not None and nb != stem(name):
            continue
        lines.append(f"{nb}.json")
        lines += [f"  {k.path}: {k.meaning}" for k in keys]
    if name is None:
        lines.append("placeholders")
        lines += [f"  {{{n}}}: {p.meaning}" for n, p in PLACEHOLDERS.items()]
        lines.append(f"  {ANY}: every key present there (possibly none)")
    return "\n".join(lines)
