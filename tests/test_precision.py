"""bf16 autocast (``fairl_lib.llm.fast.precision``): chosen from the CPU's flags, recorded in the settings,
close to fp32 on the real SmolLM2, and never applied to the rewards and scorers an RLHF step calls."""
from __future__ import annotations

import pytest
import torch

from fairl_lib.config import ConfigError, make_config
from fairl_lib.llm.fast import precision as P
from fairl_lib.llm.models import GenSettings
from fairl_lib.llm.rlhf import RLHFConfig


def test_auto_resolves_from_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(P, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert P.resolve_precision("auto") == "bf16"
    assert GenSettings(precision="auto").precision == "bf16" and RLHFConfig(precision="auto").precision == "bf16"
    monkeypatch.setattr(P, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert P.resolve_precision("auto") == "fp32" and GenSettings(precision="auto").precision == "fp32"
    assert P.resolve_precision("bf16") == "bf16"  # asked for explicitly: honoured anywhere
    assert GenSettings(precision="fp32").key()["precision"] == "fp32"  # part of every generation key


def test_unknown_precision_is_a_config_error():
    with pytest.raises(ConfigError, match="precision"):
        make_config("smoke", overrides='rlhf.precision="fp8"')
    assert make_config("smoke").rlhf.precision == "fp32"  # the smoke profile's pinned numbers stay fp32


def test_autocast_runs_matmuls_in_bf16_and_full_precision_undoes_it():
    a, w = torch.randn(4, 8), torch.randn(3, 8)
    with P.autocast("bf16"):
        assert torch.nn.functional.linear(a, w).dtype == torch.bfloat16
        with P.full_precision():
            assert torch.nn.functional.linear(a, w).dtype == torch.float32
    with P.autocast("fp32"):
        assert torch.nn.functional.linear(a, w).dtype == torch.float32


def test_a_weight_updated_inside_one_autocast_block_is_used_by_the_next_forward():
    """An RLHF run trains inside one autocast block: after an optimiser step the next forward must see
    the new weights (autocast's weight cache would hand it the step-0 copy)."""
    torch.manual_seed(0)
    lin, x = torch.nn.Linear(4, 4), torch.randn(2, 4)
    opt = torch.optim.SGD(lin.parameters(), lr=1.0)
    with P.autocast("bf16"):
        y0 = lin(x).float()
        y0.sum().backward()
        opt.step()
        y1 = lin(x).float()
    with torch.no_grad():
        expected = torch.nn.functional.linear(x, lin.weight, lin.bias)
    assert not torch.allclose(y0, y1)
    torch.testing.assert_close(y1, expected, atol=0.05, rtol=0.02)  # the updated weights, to bf16 rounding


@pytest.mark.assets
def test_bf16_log_probs_stay_close_to_fp32_on_smollm2():
    """The tolerance the cpu profile accepts for bf16: per-token log-probabilities of real text within
    0.1 nat at the median and the greedy next token the same at >= 90% of positions."""
    from fairl_lib.llm.models import load_lm

    lm = load_lm("smollm2-135m")
    text = ["The committee met on Tuesday to discuss the budget, and after a long debate the members agreed "
            "to postpone the vote until the next session."]
    ids = lm.tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        lp32 = torch.log_softmax(lm.model(ids).logits.float(), -1)
        with P.autocast("bf16"):
            lp16 = torch.log_softmax(lm.model(ids).logits.float(), -1)
    tgt = ids[:, 1:, None]
    d = (lp16[:, :-1].gather(-1, tgt) - lp32[:, :-1].gather(-1, tgt)).abs()
    assert float(d.median()) < 0.1
    agree = (lp16.argmax(-1) == lp32.argmax(-1)).float().mean()
    assert float(agree) >= 0.9


def _tiny_llama(tie: bool):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=tie)
    return LlamaForCausalLM(cfg).eval()


@pytest.mark.parametrize("tie", [True, False])
def test_bf16_weight_copies_give_autocasts_numbers_and_put_the_weights_back(tie):
    """Holding the linear weights as bf16 copies while generating is what autocast computes anyway (the
    logits are bit-identical), the embedding lookup keeps fp32 (also when the output layer is tied to
    it), and on exit the model holds its own fp32 Parameter objects again; fp32 leaves the model alone."""
    model = _tiny_llama(tie)
    params = {n: p for n, p in model.named_parameters()}
    ids = torch.randint(0, 40, (3, 7), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode(), P.autocast("bf16"):
        want = model(ids).logits
    with P.bf16_weights(model, "bf16"):
        assert model.lm_head.weight.dtype == torch.bfloat16
        assert model.get_input_embeddings().weight.dtype == torch.float32
        with torch.inference_mode(), P.autocast("bf16"):
            got = model(ids).logits
    assert torch.equal(got, want)
    assert {n: p for n, p in model.named_parameters()} == params
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model.lm_head.weight is params.get("lm_head.weight", params["model.embed_tokens.weight"])
    with P.bf16_weights(model, "fp32"):
        assert all(p.dtype == torch.float32 for p in model.parameters())

