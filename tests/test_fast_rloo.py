"""The fast RLOO step (fairl_lib.llm.fast.rloo) against trl's own RLOOTrainer, over several steps.

Both runs train the same tiny randomly initialised Llama (4 blocks, the top 2 trained, so 2 frozen
blocks form the shared trunk; a word-level tokenizer: all offline) in fp32 from the same seed, with
the same deterministic reward (the fraction of the word "good") and trl's multinomial sampler. The
plain run is ``rlhf.train_policy`` with every speed-up off, which trains trl's ``RLOOTrainer``
itself; the fast run switches on the three switches of ``FastRLOOSettings`` (the frozen trunk shared
by the old, reference and training passes, the trunk taken from the rollouts' decoding, the old pass
reused as the loss's forward pass), and in a second case also one prefill per prompt.

Tolerance, and why not bit-equal: the fast step computes the same numbers in another order. The
trunk's training pass sees trl's shuffled rows, the rollouts' trunk was computed one token at a time
(other GEMM shapes), and the reused old pass replaces a second forward whose rows trl reordered; a
GEMM's fp32 rounding depends on its shapes and row order, so KL, loss and weights can differ in the
last bits. Measured here over 4 steps (the same in both cases): the completions and rewards identical, KL
within 3.2e-7 (absolute; KL values up to 0.15), the loss within 1.2e-8 (RLOO's loss is itself ~1e-9:
the leave-one-out advantages sum to zero and the ratio is 1), every trained weight within 2.2e-7
(absolute) while the weights moved up to 4.0e-3 from the base model. So the test asks for identical
completions and rewards, and KL, loss and weights within ``atol=1e-6`` (with ``rtol=1e-5``): a few
times the measured rounding, thousands of times below the weights' change over the run. A relative
bound alone would not do: the loss and some weights sit near zero. (The loss check is weak by nature,
the loss being ~0 by construction; its gradient is checked through the trained weights.)
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
trl = pytest.importorskip("trl")

from fairl_lib.llm import rlhf
from fairl_lib.llm.fast import rloo as fast_rloo
from fairl_lib.llm.fast.rloo import FastRLOOSettings
from fairl_lib.llm.models import load_lm, save_lm

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORDS = ["good", "bad", "the", "cat", "dog", "is", "very", "not", "a", "day", "you", "are", "nice", "rude"]
PROMPTS = ["the cat is", "you are", "a dog is very", "the day is not", "you are a", "the dog"]
STEPS = 4
TOL = {"rtol": 1e-5, "atol": 1e-6}


def good_fraction(completions: list[str]) -> list[float]:
    """A deterministic reward: the fraction of words that are 'good'."""
    return [sum(w == "good" for w in c.split()) / max(len(c.split()), 1) for c in completions]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    """A 4-block Llama (random weights, seed 0) with a word-level tokenizer, saved as a fairl model folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<pad>", "<eos>", "<bos>", "<unk>", *WORDS])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(single="$A", special_tokens=[])
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
                                  unk_token="<unk>")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return save_lm(LlamaForCausalLM(cfg), tok, tmp_path_factory.mktemp("fast_rloo") / "base", base="local")


def rloo_config(fast: FastRLOOSettings, share_prefix: bool = False) -> rlhf.RLHFConfig:
    return rlhf.RLHFConfig(algorithm="rloo", steps=STEPS, prompts_per_step=2, generations_per_prompt=3, lr=1e-3,
                           beta=0.05, max_new_tokens=5, trainable_top_blocks=2, eval_every=0, save_steps=0, seed=0,
                           sampler="multinomial", share_prefix=share_prefix, precision="fp32", fast=fast)


def train(base: Path, cfg: rlhf.RLHFConfig, out: Path) -> dict:
    calls: list[list[str]] = []

    def reward(completions: list[str]) -> list[float]:
        calls.append(list(completions))
        return good_fraction(completions)

    path, hist = rlhf.train_policy(str(base), PROMPTS, reward, cfg, out, verbose=False)
    info = json.loads((out / rlhf.DONE_FILE).read_text())
    return {"calls": calls, "history": hist[hist.step > 0].reset_index(drop=True),
            "weights": load_lm(path).model.state_dict(), "speedups": info["speedups"]}


@pytest.fixture(scope="module")
def plain_run(tiny_llama, tmp_path_factory) -> dict:
    """trl's own RLOO step: every speed-up off."""
    cfg = rloo_config(FastRLOOSettings.off())
    assert not rlhf.wants_fast_step(cfg)
    return train(tiny_llama, cfg, tmp_path_factory.mktemp("plain") / "run")


@pytest.mark.parametrize("share_prefix", [False, True], ids=["switches", "switches+prefix"])
def test_fast_rloo_step_equals_trls_step_over_several_steps(tiny_llama, plain_run, tmp_path, share_prefix):
    cfg = rloo_config(FastRLOOSettings(), share_prefix=share_prefix)
    assert rlhf.wants_fast_step(cfg)
    fast = train(tiny_llama, cfg, tmp_path / "fast")
    # the plain run trained trl's class itself; the fast run used every switch at every step
    assert plain_run["speedups"] == {}
    info = fast["speedups"]
    assert info["frozen_trunk_layers"] == 2 and info["frozen_trunk_models"] == 2
    assert info["old_pass_reused"] == STEPS and info["trunk_rollout_hits"] == STEPS
    # the same completions, so the same rewards, at every step
    assert len(fast["calls"]) == len(plain_run["calls"]) == STEPS
    assert fast["calls"] == plain_run["calls"]
    a, b = fast["history"], plain_run["history"]
    assert list(a.step) == list(b.step) == list(range(1, STEPS + 1))
    np.testing.assert_array_equal(a["reward"].to_numpy(), b["reward"].to_numpy())
    for col in ("kl", "loss"):
        np.testing.assert_allclose(a[col].to_numpy(), b[col].to_numpy(), **TOL, err_msg=col)
    base = load_lm(tiny_llama).model.state_dict()
    moved = 0
    for name, w in plain_run["weights"].items():
        torch.testing.assert_close(fast["weights"][name], w, **TOL, msg=name)
        moved += not torch.equal(w, base[name])
    assert moved > 0  # it trained: the comparison is not between two untouched models


def test_another_trl_version_stops_with_one_line_saying_what_to_do(monkeypatch):
    assert trl.__version__ in fast_rloo.SUPPORTED_TRL  # the installed trl is the one the equality test covers
    fast_rloo.check_trl_version()
    monkeypatch.setattr(trl, "__version__", "99.0.0")
    with pytest.raises(RuntimeError) as err:
        fast_rloo.fast_rloo_trainer_class()
    msg = str(err.value)
    assert "\n" not in msg and "trl 99.0.0 is installed" in msg
    assert f"install trl=={fast_rloo.SUPPORTED_TRL[-1]}" in msg and "FastRLOOSettings.off()" in msg


def test_rlhf_overrides_no_trl_method():
    """``llm/rlhf.py`` subclasses no trl trainer: the only override of trl's methods lives in ``llm/fast/rloo.py``."""
    tree = ast.parse(Path(rlhf.__file__).read_text())
    bases = {getattr(b, "id", getattr(b, "attr", "")) for n in ast.walk(tree) if isinstance(n, ast.ClassDef)
             for b in n.bases}
    assert not bases & {"RLOOTrainer", "PPOTrainer", "GRPOTrainer", "Trainer"}
    assert "_get_per_token_logps" not in Path(rlhf.__file__).read_text()


def test_stage_keys_list_the_switches_beside_the_rlhf_fields():
    """``settings_dict`` is flat: the fast switches sit where they were as ``[rlhf]`` fields, so stage keys of
    runs with the same settings did not change when the switches moved into ``FastRLOOSettings``."""
    cfg = rloo_config(FastRLOOSettings(reuse_old_pass=False))
    d = rlhf.settings_dict(cfg)
    assert "fast" not in d and d["reuse_old_pass"] is False and d["share_frozen_trunk"] is True
    assert d["trunk_from_rollouts"] is True and d["sampler"] == "multinomial" and d["steps"] == STEPS
