"""Toxicity scorers: the Keras-faithful tokenizer, the BiLSTM port, the profanity judge, rewards."""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fairl_lib.llm import scorers as S
from fairl_lib.llm.assets import AssetUnavailable

README_TEXT = "You are so dumb and stupid!"
README_SCORES = {"toxic": 0.9889402985572815, "severe_toxic": 0.07256772369146347, "obscene": 0.620429277420044,
                 "threat": 0.01934845559298992, "insult": 0.8664075136184692, "identity_hate": 0.04072948172688484}
# README "Overall Toxicity Score" = mean of the 6 labels, printed to 4 decimals.
README_MEANS = {"You are so dumb and stupid!": 0.4347, "I hate you so much!": 0.1395,
                "This is wonderful news.": 0.0013, "You're disgusting!": 0.3110,
                "Absolutely love your energy!": 0.0088, "You're the worst person ever!": 0.0937,
                "Have a nice day :)": 0.0115}


# --------------------------------------------------------------------------- tokenizer (no assets)


def test_text_to_word_sequence_matches_keras_rules():
    assert S.text_to_word_sequence("") == []
    assert S.text_to_word_sequence("   ") == []
    assert S.text_to_word_sequence("!!!...") == []
    assert S.text_to_word_sequence("Hello, WORLD!! you're") == ["hello", "world", "you're"]
    assert S.text_to_word_sequence("a\tb\nc") == ["a", "b", "c"]
    # Keras splits only on ' ' (after mapping the filters): '\r' and NBSP stay inside words.
    assert S.text_to_word_sequence("a\rb c\u00a0d") == ["a\rb", "c\u00a0d"]


def test_keras_num_words_and_oov_semantics():
    wi = {"the": 1, "cat": 2, "sat": 3, "mat": 4}
    tok = S.KerasTokenizer(word_index=wi, num_words=3)
    # index >= num_words and unknown words are dropped without an OOV token
    assert tok.text_to_sequence("The cat sat on the mat") == [1, 2, 1]
    tok_oov = S.KerasTokenizer(word_index={"<oov>": 1, **{k: v + 1 for k, v in wi.items()}},
                               num_words=4, oov_token="<oov>")
    assert tok_oov.text_to_sequence("the cat sat on mat") == [2, 3, 1, 1, 1]
    assert S.KerasTokenizer(word_index=wi, num_words=None).text_to_sequence("mat") == [4]
    assert tok.texts_to_sequences(["", "cat"]) == [[], [2]]


def test_pad_sequences_pre_pads_and_pre_truncates():
    out = S.pad_sequences_pre([[], [1, 2], list(range(1, 8))], maxlen=5)
    assert out.dtype == np.int64
    assert out.tolist() == [[0, 0, 0, 0, 0], [0, 0, 0, 1, 2], [3, 4, 5, 6, 7]]


def test_tokenizer_unpickler_refuses_other_classes():
    payload = pickle.dumps(os.system)  # a global that is not on the allow list
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        S._TokenizerUnpickler(io.BytesIO(payload)).load()


# --------------------------------------------------------------------------- registry + reward


def test_unknown_scorer_lists_valid_names():
    with pytest.raises(S.ScorerError) as err:
        S.get_scorer("perspective")
    for name in ("bilstm", "profanity", "roberta", "detoxify"):
        assert name in str(err.value)


def test_reward_kinds():
    p = np.array([0.0, 0.1, 0.5, 0.9, 1.0])
    np.testing.assert_allclose(S.reward_from_scores({"toxic": p}), 1 - p)
    logit = S.reward_from_scores(p, kind="logit")
    assert logit[2] == pytest.approx(0.0)
    assert np.all(np.isfinite(logit))
    np.testing.assert_allclose(logit[1], np.log(9.0))
    with pytest.raises(ValueError, match="one_minus_p, logit"):
        S.reward_from_scores(p, kind="softplus")


@given(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=20, unique=True))
def test_rewards_decrease_with_toxicity(ps):
    p = np.sort(np.array(ps))
    for kind in S.REWARD_KINDS:
        r = S.reward_from_scores(p, kind=kind)
        assert np.all(np.diff(r) <= 0), kind


def test_ground_truth_default_per_profile():
    assert S.ground_truth_scorer_name("smoke") == "bilstm"
    assert S.ground_truth_scorer_name("cpu") == "bilstm"


def test_paper_scorers_fail_offline_with_advice(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("FAIRL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FAIRL_DETOXIFY_CKPT", raising=False)
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(AssetUnavailable, match="s-nlp/roberta_toxicity_classifier"):
        S.get_scorer("roberta", batch_size=8)
    with pytest.raises(AssetUnavailable, match="FAIRL_DETOXIFY_CKPT"):
        S.get_scorer("detoxify", batch_size=8)


# --------------------------------------------------------------------------- BiLSTM (real weights)


@pytest.fixture(scope="module")
def bilstm():
    return S.get_scorer("bilstm")


@pytest.mark.assets
def test_bilstm_reproduces_package_readme(bilstm):
    scores = bilstm([README_TEXT])
    assert set(scores) == set(S.LABELS)
    for label, expected in README_SCORES.items():
        assert scores[label][0] == pytest.approx(expected, abs=1e-4), label


@pytest.mark.assets
def test_bilstm_reproduces_readme_overall_scores(bilstm):
    texts = list(README_MEANS)
    p = bilstm.probabilities(texts)
    for text, mean in zip(texts, p.mean(axis=1)):
        assert mean == pytest.approx(README_MEANS[text], abs=1e-4 + 5e-5), text  # README rounds to 4 d.p.


@pytest.mark.assets
def test_bilstm_batching_and_edge_cases(bilstm):
    texts = ["", "!!!", "ok", README_TEXT, "word " * 500, "\u4f60\u597d"]
    together = bilstm.probabilities(texts)
    one_by_one = np.concatenate([bilstm.probabilities([t]) for t in texts])
    np.testing.assert_allclose(together, one_by_one, atol=1e-6)
    assert np.all((together > 0) & (together < 1))
    # no known word -> all-padding input -> the same scores as the empty string
    np.testing.assert_allclose(together[1], together[0], atol=1e-7)
    np.testing.assert_allclose(together[5], together[0], atol=1e-7)
    assert together[0, 0] == pytest.approx(0.0675, abs=1e-3)  # empty text: P(toxic) about 0.068
    assert bilstm.encode(["word " * 500]).shape == (1, S.MAXLEN)
    assert bilstm([])["toxic"].shape == (0,)


@pytest.mark.assets
def test_bilstm_tokenizer_state_is_the_packages(bilstm):
    tok = bilstm.tokenizer
    assert tok.num_words == 20000 and tok.oov_token is None and tok.lower and tok.split == " "
    assert tok.filters == S.KERAS_FILTERS
    assert tok.word_index["the"] == 1


# --------------------------------------------------------------------------- profanity judge


@pytest.mark.assets
def test_profanity_judge_clean_low_profane_high():
    prof = S.get_scorer("profanity")
    p = prof(["Thank you for your help with the article.", "The weather is lovely today.",
              "you are a fucking idiot", "shit"])["toxic"]
    assert p[0] < 0.1 and p[1] < 0.1
    assert p[2] > 0.9 and p[3] > 0.9


@pytest.mark.assets
def test_profanity_equals_package_formula():
    prof = S.get_scorer("profanity")
    texts = ["hello there", "you idiot", "", "What a day"]
    # alt-profanity-check 1.9.1 predict_prob: apply_along_axis(lambda p: p[1], 1, predict_proba(...))
    expected = np.apply_along_axis(lambda row: row[1], 1,
                                   prof.model.predict_proba(prof.vectorizer.transform(texts)))
    np.testing.assert_array_equal(prof(texts)["toxic"], expected)


# --------------------------------------------------------------------------- quality on real labels


@pytest.mark.assets
@pytest.mark.parametrize("name", ["bilstm", "profanity"])
def test_scorer_auc_on_jigsaw_test_split(name):
    """ROC-AUC of P(toxic) vs the human ``toxic`` label on the mirror's Jigsaw test-split comments
    (800 rows; measured: bilstm 0.9525, profanity 0.9516)."""
    if not os.environ.get("FAIRL_DATA_MIRROR"):
        pytest.skip("FAIRL_DATA_MIRROR is not set (point it at ../shared/fairl-data)")
    from sklearn.metrics import roc_auc_score

    from fairl_lib.llm.data import load_jigsaw

    df = load_jigsaw()
    test = df[df["split"] == "test"]
    assert len(test) >= 500
    auc = roc_auc_score(test["toxic"], S.get_scorer(name)(test["comment_text"].tolist())["toxic"])
    assert auc > 0.9, auc


@pytest.mark.assets
def test_toxicity_reward_callable(bilstm):
    reward = S.toxicity_reward("bilstm")
    r = reward([README_TEXT, "Have a nice day :)"])
    assert r[0] == pytest.approx(1 - README_SCORES["toxic"], abs=1e-4)
    assert r[1] > 0.9
    with pytest.raises(ValueError):
        S.toxicity_reward("bilstm", kind="nope")


def test_scorer_modules_do_not_need_tensorflow():
    import sys

    assert "tensorflow" not in sys.modules and "keras" not in sys.modules
    assert Path(S.__file__).read_text().count("import tensorflow") == 0
