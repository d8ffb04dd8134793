"""fairl_lib.llm.fast.prefix: one prefill per distinct prompt gives what plain ``generate`` gives.

Tiny randomly initialised models (GPT-2: learned positions; Llama: rotary, the SmolLM2 family;
Gemma-3: sliding-window cache layers) are fixtures for the equivalence, not results.
"""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

torch = pytest.importorskip("torch")

from fairl_lib.llm import models
from fairl_lib.llm.fast.prefix import generate_shared_prefix, prefill_positions, repeat_groups

VOCAB, PAD, EOS = 40, 0, 1


def _tiny(kind: str, vocab: int = VOCAB, bos: int = 2, eos: int = EOS, pad: int = PAD):
    import transformers as T

    torch.manual_seed(0)
    if kind == "gpt2":
        cfg = T.GPT2Config(vocab_size=vocab, n_positions=64, n_embd=32, n_layer=2, n_head=2,
                           bos_token_id=bos, eos_token_id=eos, pad_token_id=pad)
        return T.GPT2LMHeadModel(cfg).eval()
    if kind == "llama":
        cfg = T.LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                            bos_token_id=bos, eos_token_id=eos, pad_token_id=pad)
        return T.LlamaForCausalLM(cfg).eval()
    cfg = T.Gemma3TextConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                             num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=4,
                             layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                             max_position_embeddings=64, bos_token_id=bos, eos_token_id=eos, pad_token_id=pad)
    return T.Gemma3ForCausalLM(cfg).eval()


def _batch(rows: list[list[int]], repeats: list[int]):
    ids = [r for r, k in zip(rows, repeats) for _ in range(k)]
    return models._left_pad(ids, PAD)


PROMPTS = [[2, 5, 6, 7, 8, 9, 10], [2, 11, 12], [2, 13, 14, 15, 16], [2, 17]]


def test_repeat_groups_hand_worked():
    ids = torch.tensor([[1, 2], [1, 2], [3, 4], [1, 2], [1, 2]])
    mask = torch.ones_like(ids)
    assert repeat_groups(ids, mask).tolist() == [0, 0, 1, 2, 2]
    mask[1, 0] = 0  # same ids, different padding: not the same prompt
    assert repeat_groups(ids, mask).tolist() == [0, 1, 2, 3, 3]
    assert repeat_groups(ids[:0], mask[:0]).tolist() == []


def test_prefill_positions_follow_left_padding():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert prefill_positions(mask).tolist() == [[1, 1, 0, 1, 2], [0, 1, 2, 3, 4]]


@pytest.mark.parametrize("kind", ["gpt2", "llama", "gemma3"])
def test_shared_prefill_equals_plain_generate(kind):
    """Greedy continuations identical, every step's logits equal up to float rounding."""
    model = _tiny(kind)
    ids, mask = _batch(PROMPTS, [3, 1, 4, 2])
    kw = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": PAD, "eos_token_id": None,
          "output_logits": True, "return_dict_in_generate": True}
    with torch.inference_mode():
        plain = model.generate(input_ids=ids, attention_mask=mask, **kw)
        shared = generate_shared_prefix(model, ids, mask, **kw)
    assert torch.equal(plain.sequences, shared.sequences)
    for a, b in zip(plain.logits, shared.logits, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_shared_prefill_sampled_rows_follow_the_same_stream():
    """With sampling and the same seed, the draws see the same probabilities: same tokens."""
    model = _tiny("llama")
    ids, mask = _batch(PROMPTS, [4, 4, 4, 4])
    tok_kw = {"max_new_tokens": 8, "do_sample": True, "pad_token_id": PAD, "top_k": 0}
    out = []
    for fn in (lambda: model.generate(input_ids=ids, attention_mask=mask, **tok_kw),
               lambda: generate_shared_prefix(model, ids, mask, **tok_kw)):
        torch.manual_seed(3)
        with torch.inference_mode():
            out.append(fn())
    assert torch.equal(out[0], out[1])
    assert len({tuple(r) for r in out[0][:4, ids.shape[1]:].tolist()}) > 1  # the copies do differ


def test_no_repeats_or_own_cache_is_plain_generate(monkeypatch):
    model = _tiny("llama")
    ids, mask = _batch(PROMPTS, [1, 1, 1, 1])
    calls = []
    monkeypatch.setattr(model, "forward", lambda *a, **k: pytest.fail("no prefill expected"), raising=False)
    generate_shared_prefix(model, ids, mask, generate=lambda **k: calls.append(k) or "out", max_new_tokens=2)
    assert calls and "past_key_values" not in calls[0]
    ids, mask = _batch(PROMPTS, [2, 1, 1, 1])
    generate_shared_prefix(model, ids, mask, generate=lambda **k: calls.append(k), past_key_values="own")
    assert calls[-1]["past_key_values"] == "own"


def test_models_generate_same_with_and_without_sharing(tmp_path):
    """``models.generate`` (the pairs / evaluation path): identical greedy texts either way."""
    from test_models import _tokenizer  # tests/ is on sys.path under pytest

    tok = _tokenizer()
    model = _tiny("llama", len(tok), tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    lm = models.load_lm(models.save_lm(model, tok, tmp_path / "m", base="local"))
    prompts = [p for p in ["the cat is", "you are a very", "dog"] for _ in range(3)]
    for do_sample in (False, True):
        s = models.GenSettings(max_new_tokens=5, batch_size=4, do_sample=do_sample)
        a = models.generate(lm.model, lm.tokenizer, prompts, s, seed=1)
        b = models.generate(lm.model, lm.tokenizer, prompts, models.GenSettings(**{**s.__dict__, "share_prefix": False}),
                            seed=1)
        assert a == b
