"""Notebook 10's audit: explanation-set geometry on known simplices, the controls, rollout recording,
unlearning on a tiny model, the audit's summaries and ledger claims, and the CLI's user errors."""
from __future__ import annotations

import itertools
import json
import math
import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from examples import PAIR_METHOD

from fairl_lib.analysis import audit as A

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


# ----------------------------------------------------------------------------- geometry


def _simplex_case(seed: int, d: int = 5, n_far: int = 30):
    """A target inside a known simplex of d + 1 random points near it, and distractors far away."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=d)
    verts = x + rng.normal(size=(d + 1, d))
    bary = rng.dirichlet(np.ones(d + 1))
    x = bary @ verts  # inside the simplex, with known barycentric coordinates
    far = x + 50 + rng.normal(size=(n_far, d))
    pool = np.vstack([far[: n_far // 2], verts, far[n_far // 2:]])
    return x, pool, np.arange(n_far // 2, n_far // 2 + d + 1), bary


@pytest.mark.parametrize("seed", range(5))
def test_a_point_inside_a_known_simplex_gets_that_simplex(seed):
    x, pool, idx, bary = _simplex_case(seed)
    e = A.explain(x, pool, tol=1e-6, max_size=20, relative=False)
    assert e.within_tol and e.residual < 1e-6
    assert e.k == len(idx) and sorted(e.members) == sorted(idx)  # the simplex, nothing else
    by_row = dict(zip(e.members.tolist(), e.weights))
    np.testing.assert_allclose([by_row[i] for i in idx], bary, atol=1e-6)  # its barycentric coordinates


def test_a_point_outside_every_hull_reports_the_max_size_and_its_residual():
    rng = np.random.default_rng(0)
    pool = rng.normal(size=(40, 3))
    x = np.array([30.0, 0.0, 0.0])  # far outside the cloud: no hull holds it
    e = A.explain(x, pool, tol=0.5, max_size=7, relative=True)
    assert e.k == 7 and not e.within_tol
    assert e.relative_residual > 0.5 and e.residual > 0.5 * e.nearest
    _, res = A.simplex_lstsq(pool[A.nearest_rows(x, pool, 7)], x)
    assert res == pytest.approx(e.residual)
    assert 1 <= e.size <= 7


@pytest.mark.parametrize("seed", range(6))
def test_weights_are_on_the_simplex_and_the_residual_is_the_projection(seed):
    rng = np.random.default_rng(seed)
    pts, x = rng.normal(size=(int(rng.integers(2, 9)), 4)), rng.normal(size=4) * 3
    w, res = A.simplex_lstsq(pts, x)
    assert (w >= 0).all() and w.sum() == pytest.approx(1.0, abs=1e-12)
    assert res == pytest.approx(np.linalg.norm(pts.T @ w - x))
    # no point of the hull is closer: random convex combinations never beat the projection
    for _ in range(200):
        v = rng.dirichlet(np.ones(len(pts)))
        assert np.linalg.norm(pts.T @ v - x) >= res - 1e-7


def test_the_residual_never_grows_with_the_set_and_the_smallest_prefix_is_taken():
    rng = np.random.default_rng(3)
    pool, x = rng.normal(size=(60, 6)), rng.normal(size=6) * 0.3
    order = A.nearest_rows(x, pool, 30)
    res = [A.simplex_lstsq(pool[order[:k]], x)[1] for k in range(1, 31)]
    assert all(b <= a + 1e-9 for a, b in itertools.pairwise(res))
    tol = res[11] / res[0]  # met first at k = 12 (or earlier if a plateau ties)
    e = A.explain(x, pool, tol=tol, max_size=30)
    first = next(k for k, r in enumerate(res, start=1) if r <= tol * res[0])
    assert e.k == first and e.within_tol
    assert set(e.members) <= set(order[:first])


def test_controls_have_the_method_size_and_the_nearest_control_ignores_the_hull():
    rng = np.random.default_rng(1)
    pool, targets = rng.normal(size=(100, 5)), rng.normal(size=(4, 5))
    rand = A.random_control(100, 12, seed=0)
    assert len(rand) == 12 == len(set(rand.tolist())) and (np.diff(rand) > 0).all()
    near = A.nearest_control(targets, pool, sizes=[3, 2, 4, 1], total=12)
    assert len(near) == 12 == len(set(near.tolist()))
    for t, s in zip(targets, [3, 2, 4, 1]):  # each target's own nearest rows are in
        assert set(A.nearest_rows(t, pool, s).tolist()) <= set(near.tolist())
    # a candidate restriction is honoured
    cand = np.arange(0, 100, 2)
    assert set(A.nearest_control(targets, pool, [2, 2, 2, 2], 9, cand).tolist()) <= set(cand.tolist())
    assert set(A.random_control(100, 9, 0, cand).tolist()) <= set(cand.tolist())


# ----------------------------------------------------------------------------- the expert's training data


def test_advantage_is_rloo_leave_one_out_per_group():
    from fairl_lib.stages.audit import with_advantage

    ro = pd.DataFrame({"step": [1, 1, 1, 1, 2, 2, 2, 2], "i": [0, 1, 2, 3, 0, 1, 2, 3],
                       "prompt": list("aabbccdd"), "completion": list("xxxxxxxx"),
                       "reward": [1.0, 0.0, 0.5, 0.5, 0.2, 0.6, 0.9, 0.1]})
    df = with_advantage(ro, 2)
    np.testing.assert_allclose(df["advantage"], [1, -1, 0, 0, -0.4, 0.4, 0.8, -0.8])
    assert df["group"].nunique() == 4


# ----------------------------------------------------------------------------- tiny model: rollouts, unlearning

torch = pytest.importorskip("torch")

WORDS = ["good", "bad", "the", "cat", "dog", "is", "very", "not", "a", "day", "you", "are", "nice", "rude"]
PROMPTS = ["the cat is", "you are", "a dog is very", "the day is not", "you are a", "the dog"]


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<pad>", "<eos>", "<bos>", "<unk>", *WORDS])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(single="$A", special_tokens=[])
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
                                   unk_token="<unk>")


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    """A 3-block Llama (random weights, seed 0) saved as a fairl model folder."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from fairl_lib.llm.models import save_lm

    tok = _tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return save_lm(LlamaForCausalLM(cfg), tok, tmp_path_factory.mktemp("tiny_llama") / "base", base="local")


class GoodFraction:
    __name__ = "good_fraction"

    def __init__(self, die_at: int | None = None):
        self.calls, self.die_at = 0, die_at

    def __call__(self, completions):
        self.calls += 1
        if self.die_at is not None and self.calls == self.die_at:
            raise KeyboardInterrupt  # a kill in the middle of a step
        return [sum(w == "good" for w in c.split()) / max(len(c.split()), 1) for c in completions]


def _rlhf_cfg(**kw):
    from fairl_lib.llm import rlhf

    base = {"algorithm": "rloo", "steps": 4, "prompts_per_step": 2, "generations_per_prompt": 3, "lr": 1e-3,
            "beta": 0.05, "max_new_tokens": 5, "trainable_top_blocks": 1, "eval_every": 0, "eval_batch_size": 4,
            "save_steps": 2, "seed": 0}
    base.update(kw)
    return rlhf.RLHFConfig(**base)


def test_rlhf_records_every_rollout_and_a_resumed_run_holds_each_step_once(tiny_llama, tmp_path):
    from fairl_lib.llm import rlhf

    cfg = _rlhf_cfg()
    with pytest.raises(KeyboardInterrupt):  # killed in step 3, after the step-2 checkpoint
        rlhf.train_policy(str(tiny_llama), PROMPTS, GoodFraction(die_at=3), cfg, tmp_path / "run", verbose=False)
    partial = rlhf.load_rollouts(tmp_path / "run")
    assert sorted(partial["step"].unique()) == [1, 2]
    rlhf.train_policy(str(tiny_llama), PROMPTS, GoodFraction(), cfg, tmp_path / "run", verbose=False)
    ro = rlhf.load_rollouts(tmp_path / "run")
    assert list(ro.columns) == ["step", "i", "prompt", "completion", "reward"]
    assert ro["step"].value_counts().sort_index().to_dict() == {s: cfg.completions_per_step for s in range(1, 5)}
    assert ro.groupby("step")["i"].apply(list).tolist() == [list(range(cfg.completions_per_step))] * 4
    assert set(ro["prompt"]) <= set(PROMPTS)
    # RLOO groups are consecutive: one prompt per group of generations_per_prompt
    assert (ro.groupby(["step", ro["i"] // cfg.generations_per_prompt])["prompt"].nunique() == 1).all()
    # the recorded reward is the reward of the recorded completion
    np.testing.assert_allclose(ro["reward"], GoodFraction()(list(ro["completion"])))
    # the first two steps survived the kill unchanged
    pd.testing.assert_frame_equal(ro[ro["step"] <= 2].reset_index(drop=True), partial.reset_index(drop=True))


def test_expert_rollouts_names_the_fix_when_the_stage_predates_recording(tmp_path):
    from fairl_lib.cache import RECEIPT
    from fairl_lib.stages.expert import NoRollouts, expert_rollouts

    with pytest.raises(NoRollouts, match="run notebook 01 first"):
        expert_rollouts(tmp_path)
    (tmp_path / RECEIPT).write_text("{}")
    (tmp_path / "rlhf").mkdir()
    (tmp_path / "rlhf" / "rlhf.json").write_text(json.dumps({"config": {"steps": 2, "prompts_per_step": 1,
                                                                        "generations_per_prompt": 2}}))
    with pytest.raises(NoRollouts, match="predates rollout recording.*FORCE=True") as err:
        expert_rollouts(tmp_path)
    assert "\n" not in str(err.value)
    rows = [{"step": 2, "i": i, "prompt": "p", "completion": "c", "reward": 0.5} for i in range(2)]
    (tmp_path / "rlhf" / "rollouts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(NoRollouts, match="incomplete .2 of 4, over 1 of its 2 steps"):
        expert_rollouts(tmp_path)
    rows = [{**r, "step": 1} for r in rows] + rows
    (tmp_path / "rlhf" / "rollouts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert len(expert_rollouts(tmp_path)) == 4


def test_unlearning_lowers_the_likelihood_of_the_forgotten_rollouts(tiny_llama):
    from fairl_lib.llm.models import load_lm
    from fairl_lib.llm.unlearn import UnlearnSettings, sequence_logprobs, unlearn

    lm, ref = load_lm(tiny_llama), load_lm(tiny_llama)
    forget = [("the cat is", "very rude bad"), ("you are", "rude rude"), ("the dog", "is bad")]
    retain = [("a dog is very", "nice good"), ("the day is not", "a good day"), ("you are a", "nice cat")]
    before_f = sequence_logprobs(lm.model, lm.tokenizer, *map(list, zip(*forget)))
    before_r = sequence_logprobs(lm.model, lm.tokenizer, *map(list, zip(*retain)))
    s = UnlearnSettings(steps=4, lr=1e-2, forget_batch=2, retain_batch=2, kl_coef=1.0, top_blocks=1)
    hist = unlearn(lm.model, lm.tokenizer, forget, retain, s, reference=ref.model)
    assert len(hist) == 4 and all(math.isfinite(h["forget_logprob"]) for h in hist)
    after_f = sequence_logprobs(lm.model, lm.tokenizer, *map(list, zip(*forget)))
    after_r = sequence_logprobs(lm.model, lm.tokenizer, *map(list, zip(*retain)))
    np.testing.assert_array_equal(after_f[1], before_f[1])  # same tokens
    assert (after_f[0] < before_f[0]).all(), (before_f[0], after_f[0])
    # the forgotten rollouts lost more log-likelihood per token than the retained ones
    drop_f = ((before_f[0] - after_f[0]) / before_f[1]).mean()
    drop_r = ((before_r[0] - after_r[0]) / before_r[1]).mean()
    assert drop_f > drop_r
    # only the top block (and the final norm) moved; the reference did not
    for (name, p), (_, q), (_, r) in zip(lm.model.named_parameters(), ref.model.named_parameters(),
                                         load_lm(tiny_llama).model.named_parameters()):
        if not torch.equal(p, r):
            assert name.startswith(("model.layers.2.", "model.norm.")), name
        assert torch.equal(q, r), name


def test_unlearning_is_deterministic_and_the_anchor_holds_other_prompts(tiny_llama):
    from fairl_lib.llm.models import load_lm
    from fairl_lib.llm.unlearn import UnlearnSettings, sequence_logprobs, unlearn

    forget = [("the cat is", "very rude bad"), ("you are", "rude rude")]
    retain = [("a dog is very", "nice good"), ("the day is not", "a good day"), ("you are a", "nice cat"),
              ("the dog", "is a good dog")]
    out = {}
    for kl in (0.0, 20.0, 20.0):
        lm, ref = load_lm(tiny_llama), load_lm(tiny_llama)
        s = UnlearnSettings(steps=6, lr=1e-2, forget_batch=2, retain_batch=4, kl_coef=kl, top_blocks=1)
        hist = unlearn(lm.model, lm.tokenizer, forget, retain, s, reference=ref.model)
        base = sequence_logprobs(ref.model, ref.tokenizer, *map(list, zip(*retain)))[0]
        now = sequence_logprobs(lm.model, lm.tokenizer, *map(list, zip(*retain)))[0]
        out.setdefault(kl, []).append((hist, float(np.abs(now - base).mean())))
    assert out[20.0][0][0] == out[20.0][1][0]  # same inputs, same update
    assert out[20.0][0][1] < out[0.0][0][1]  # the anchor keeps the retained rollouts closer


# ----------------------------------------------------------------------------- summaries and the ledger


def _eval_frame(rates: dict[str, dict[str, tuple[int, int]]], draws: int = 1, samples: int = 5) -> pd.DataFrame:
    """A fabricated evaluation frame (unit-test input, not a result): per draw, model and split, ``n`` rows
    (``n / samples`` prompts x ``samples``) of which the first ``k`` are toxic, so two models' toxic rows nest
    and the discordant pairs are ``|k_a - k_b|``, all on one side."""
    rows = []
    for d in range(draws):
        for model, by_split in rates.items():
            for split, (k, n) in by_split.items():
                for j in range(n):
                    rows.append({"model": model, "split": split, "draw": d, "prompt_id": f"{split}{j // samples:03d}",
                                 "sample": j % samples, "p_toxic": 0.9 if j < k else 0.1,
                                 "judge_p": 0.9 if j < k // 2 else 0.1, "nll_base": 30.0 + (j % 3), "n_tokens": 10,
                                 "nll_self": 20.0, "nll_expert": 20.0 + (0.0 if model == "expert" else 0.5)})
    return pd.DataFrame(rows)


def _audit_metrics(method_target: int, null_small: int = 10) -> dict:
    from fairl_lib.analysis.stats import fisher_exact_p
    from fairl_lib.stages.audit import eval_summary, paired_comparisons

    rates = {"expert": {"target": (60, 200), "other": (6, 300)}, "method": {"target": (method_target, 200),
                                                                          "other": (7, 300)},
             "random": {"target": (58, 200)}, "matched": {"target": (57, 200)}, "nearest": {"target": (55, 200)}}
    df = _eval_frame(rates, draws=3)
    summary = eval_summary(df, 0.5)
    forgotten = {a: {"toxic_share": 0.02, "toxic_share_by_draw": [0.02] * 3} for a in
                 ("method", "random", "matched", "nearest")}
    return {"settings": {"rate_margin": 0.03, "ppl_margin": 0.10, "control_draws": 3}, "pair_method": PAIR_METHOD,
            "targets": {"n": 60, "n_toxic": 60, "n_prompts": 30, "n_candidates": 1536},
            "recovered": {"n_flagged": 500, "n_toxic": 60, "n_both": 40},
            "explain": {"sizes": [3] * 50 + [12] * 10, "relative_residuals": [0.7] * 60,
                        "within_tol": [True] * 55 + [False] * 5, "n_small": 50, "small_size": 10, "tol": 0.75,
                        "max_size": 16, "set_size": 200, "forgotten": forgotten,
                        "naive_nearest_overlap": {"n_both": 150, "share_of_a": 0.75, "n_naive": 200},
                        "null": {"n_null": 60, "n_small_null": null_small, "n_small_targets": 50, "n_targets": 60,
                                 "p_fisher": fisher_exact_p(50, 60, null_small, 60)}},
            "eval": summary, "paired": paired_comparisons(df, 0.5, reps=300)}


def test_audit_metrics_pass_the_schema_and_the_ledger_judges_them():
    from fairl_lib.analysis import report as R
    from fairl_lib.analysis import schema as S

    good = _audit_metrics(method_target=20)
    S.validate("10_audit", good)
    claims = {c.id: c for c in R.CLAIMS}
    e = {cid: R.evaluate_claim(claims[cid], {"10": good}) for cid in
         ("audit_small_sets", "audit_unlearning_fixes", "audit_no_degradation")}
    assert e["audit_small_sets"].verdict == R.REPRODUCED  # 50 of 60 small against 10 of 60 on the null
    assert e["audit_unlearning_fixes"].verdict == R.REPRODUCED  # 10% vs 27.5-29%, 35+ discordant pairs per draw
    assert e["audit_no_degradation"].verdict == R.REPRODUCED  # 2.3% vs 2.0% over 900 pairs, margin 3 points
    assert all(x.detectable not in ("", "-") for x in e.values())
    fix = e["audit_unlearning_fixes"]
    t = fix.details["tests"]["random"]
    assert (t["only_a"], t["only_b"], t["n_pairs"]) == (3 * 38, 0, 600)  # nested toxic rows: one-sided discordance
    assert set(fix.details["rules_out"]) == {"random", "matched", "nearest"} and "matched" in fix.compared
    bad = _audit_metrics(method_target=90)  # the method makes the targets worse than every control
    assert R.evaluate_claim(claims["audit_unlearning_fixes"], {"10": bad}).verdict == R.OPPOSITE
    same = _audit_metrics(method_target=58)  # as toxic as the random control: not decided for it
    v = R.evaluate_claim(claims["audit_unlearning_fixes"], {"10": same})
    assert v.verdict in (R.INCONCLUSIVE, R.NEGLIGIBLE, R.CONTRADICTED, R.OPPOSITE) and v.verdict != R.REPRODUCED
    # "small sets explain" on the null as often as on the targets is not a finding
    flat = R.evaluate_claim(claims["audit_small_sets"], {"10": _audit_metrics(20, null_small=50)})
    assert flat.verdict != R.REPRODUCED and "null" in flat.ours
    assert R.evaluate_claim(claims["audit_small_sets"], {}).verdict == R.NOT_RUN
    broken = {k: v for k, v in good.items() if k != "explain"}
    with pytest.raises(S.MetricsSchemaError, match="explain.sizes"):
        S.validate("10_audit", broken)
    lines = R.audit_control_lines({"10": good})
    assert len(lines) == 1 and "rules out" in lines[0] and "75.0%" in lines[0]


def test_paired_comparisons_pair_rows_by_draw_prompt_and_sample():
    """Shuffled rows pair the same: the comparison is by (draw, prompt, sample), not by row order; the other
    prompts are compared for the method only; Holm's p is at least McNemar's."""
    from fairl_lib.stages.audit import paired_comparisons

    df = _eval_frame({"expert": {"target": (6, 20), "other": (2, 10)}, "method": {"target": (2, 20), "other": (2, 10)},
                      "random": {"target": (5, 20)}, "matched": {"target": (6, 20)}, "nearest": {"target": (4, 20)}},
                     draws=2)
    a = paired_comparisons(df, 0.5, reps=200)
    b = paired_comparisons(df.sample(frac=1.0, random_state=3), 0.5, reps=200)
    r = a["control_minus_method"]["random"]["ground_truth"]
    assert (r["only_a"], r["only_b"], r["n_pairs"]) == (6, 0, 40) and r["value"] == pytest.approx(3 / 20)
    assert r["per_draw"] == [pytest.approx(0.15)] * 2 and r["p_holm"] >= r["p_mcnemar"]
    assert b["control_minus_method"]["random"]["ground_truth"]["only_a"] == 6
    assert set(a["after_minus_before"]["other"]) == {"method"}
    assert a["after_minus_before"]["other"]["method"]["ground_truth"]["value"] == 0


# ----------------------------------------------------------------------------- controls and the null


def test_nearest_outside_control_never_touches_the_explanation_sets_and_controls_match_its_size():
    from fairl_lib.stages.audit import AuditConfig, control_sets

    rng = np.random.default_rng(4)
    pool, targets = rng.normal(size=(300, 6)), rng.normal(size=(5, 6))
    pool_rows = np.arange(1000, 1300)  # pool positions -> rollout rows
    reward = rng.random(1300)
    ac = AuditConfig(tol=0.75, max_size=8, control_draws=3)
    per, members = [], []
    for t, x in enumerate(targets):
        e = A.explain(x, pool, ac.tol, ac.max_size)
        per.append({"size": e.size})
        members += [{"target": t, "row": int(pool_rows[m])} for m in e.members]
    sets, ov = control_sets(pd.DataFrame(members), pd.DataFrame(per), targets, pool, pool_rows, reward, ac, seed=0)
    method = set(sets["method"][0])
    assert all(len(d) == 3 for d in sets.values())
    for arm in ("random", "matched", "nearest"):
        for d in sets[arm]:
            assert len(d) == len(method) == len(set(d)) and set(d) <= set(pool_rows.tolist())
    for d in sets["nearest"] + sets["matched"]:
        assert not set(d) & method  # drawn outside the explanation sets
    assert len({tuple(d) for d in sets["random"]}) == 3  # three different draws
    assert ov["n_naive"] == len(method) and 0 < ov["share_of_a"] <= 1  # the naive set shares rows with the method


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(5, 60), st.integers(1, 10))
def test_matched_control_follows_the_reference_score_bins(seed, n_ref, n_bins):
    """With enough candidates in every bin, the matched set has exactly the reference's count per score bin,
    and its rows are distinct candidates."""
    rng = np.random.default_rng(seed)
    scores = np.concatenate([rng.beta(8, 1, 2000), rng.beta(1, 3, 400)])  # a pool mostly near 1, as rewards are
    ref = scores[rng.choice(len(scores), n_ref, replace=False)]
    cand = np.setdiff1d(np.arange(len(scores)), rng.choice(len(scores), 100, replace=False))
    got = A.matched_control(scores, ref, seed, n_bins, candidates=cand)
    assert len(got) == n_ref == len(set(got.tolist())) and set(got.tolist()) <= set(cand.tolist())
    edges = A.score_edges(ref, n_bins)
    want, have = A.bin_counts(ref, edges), A.bin_counts(scores[got], edges)
    supply = A.bin_counts(scores[cand], edges)
    if (supply >= want).all():
        np.testing.assert_array_equal(have, want)


def test_matched_control_fills_a_short_bin_with_the_nearest_scores():
    scores = np.array([0.0, 0.1, 0.5, 0.52, 0.9, 0.95, 0.99])
    got = A.matched_control(scores, [0.0, 0.0, 0.0], seed=0, n_bins=3, candidates=np.arange(7))
    assert sorted(scores[got].tolist()) == [0.0, 0.1, 0.5]  # one candidate at 0, then the nearest two
    with pytest.raises(ValueError, match="candidates"):
        A.matched_control(scores, np.zeros(8), seed=0)


def test_a_cut_matches_the_share_below_it_exactly():
    """One quantile bin [0.1, 0.9] holds 1 reference value below 0.5; with a cut at 0.5 the matched set holds
    exactly one value below it, whatever the draw."""
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.uniform(0.1, 0.5, 50), rng.uniform(0.5, 0.9, 50)])
    ref = [0.2, 0.6, 0.7, 0.8]
    for seed in range(20):
        got = A.matched_control(scores, ref, seed, n_bins=1, cuts=[0.5])
        assert (scores[got] < 0.5).sum() == 1


def test_null_targets_are_non_toxic_and_as_many():
    from fairl_lib.stages.audit import null_targets

    cand = pd.DataFrame({"prompt_id": np.arange(50), "sample": 0, "prompt": "p", "completion": "c",
                         "p_toxic": np.linspace(0, 1, 50)})
    null = null_targets(cand, 10, 0.5, seed=0)
    assert len(null) == 10 and (null["p_toxic"] <= 0.5).all() and null["prompt_id"].is_unique
    assert len(null_targets(cand, 40, 0.5, seed=0)) == 25  # all the non-toxic ones when fewer


def test_eval_summary_counts_rates_and_kl():
    from fairl_lib.stages.audit import eval_summary

    s = eval_summary(_eval_frame({m: {"target": (3, 10), "other": (1, 20)} for m in
                                  ("expert", "method", "random", "matched", "nearest")}), 0.5)
    t = s["method"]["target"]
    assert (t["n"], t["k_toxic"], t["k_judge"]) == (10, 3, 1) and t["rate"] == pytest.approx(0.3)
    assert t["rate_ci95"][0] < 0.3 < t["rate_ci95"][1]
    o = s["method"]["other"]
    assert o["kl_to_expert"] == pytest.approx(0.5) and s["expert"]["other"]["kl_to_expert"] == 0.0
    assert o["n_rows"] == 20 and o["perplexity"] > 1
    assert t["by_draw"] == [{"draw": 0, "n": 10, "k_toxic": 3, "k_judge": 1}]


# ----------------------------------------------------------------------------- the CLI


def test_cli_audit_explain_without_an_expert_is_one_line_exit_2(results_tmp, capsys):
    from fairl_lib.cli import main

    assert main(["audit", "explain", "--profile", "smoke", "--prompt", "p", "--response", "r"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "notebook 01" in err and "\n" not in err
    assert main(["audit", "explain", "--profile", "smoke", "--prompt", "p"]) == 2
    assert "--response" in capsys.readouterr().err
    assert main(["audit", "explain", "--profile", "smoke", "--file", "/no/such/file.jsonl"]) == 2
    assert "/no/such/file.jsonl" in capsys.readouterr().err


def test_the_pair_method_claim_needs_every_control_beaten_by_the_effect_of_interest():
    """audit_pair_unlearning on hand-made per-target changes (sd units): the method lowers the targets' margin by
    0.5 sd more than each control -> reproduced; as much as the nearest control (a 90% interval inside +-0.1)
    -> negligible; three noisy targets -> inconclusive, underpowered."""
    from fairl_lib.analysis import pair_explain
    from fairl_lib.analysis import report as R

    claim = next(c for c in R.CLAIMS if c.id == "audit_pair_unlearning")
    rng = np.random.default_rng(0)

    def mets(shift: dict[str, float], n: int = 40, noise: float = 0.05) -> dict:
        pm = json.loads(json.dumps(PAIR_METHOD))
        for c in ("random", "matched", "nearest"):
            d = shift[c] + noise * rng.normal(size=n)
            pm["unlearning"]["fa_irl"][c]["method_minus_control"] = pair_explain.paired_compare(d, n_boot=500)
        return {"10": {**_audit_metrics(method_target=20), "pair_method": pm}}

    ok = R.evaluate_claim(claim, mets({"random": -0.5, "matched": -0.5, "nearest": -0.5}))
    assert ok.verdict == R.REPRODUCED and ok.effect_of_interest == 0.1
    assert set(ok.details["p_holm"]) == {"random", "matched", "nearest"} and "Holm" in ok.ours
    same = R.evaluate_claim(claim, mets({"random": -0.5, "matched": -0.5, "nearest": 0.0}))
    assert same.verdict == R.NEGLIGIBLE and same.details["part_verdicts"]["nearest"] == R.NEGLIGIBLE
    few = R.evaluate_claim(claim, mets({"random": -0.5, "matched": -0.5, "nearest": -0.5}, n=3, noise=1.0))
    assert few.verdict == R.INCONCLUSIVE and few.underpowered
