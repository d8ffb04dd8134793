"""RLHF trainer integration (fairl_lib.rlhf) on a tiny randomly initialised GPT-2.

The tiny model is a unit-test fixture (it proves the plumbing: reward callable <-> trl, history,
saving, resuming, the PPO reward wrapper); real runs use the real SmolLM2 (see benchmarks/).
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from fairl_lib import rlhf
from fairl_lib.models import load_lm, save_lm

WORDS = ["good", "bad", "the", "cat", "dog", "is", "very", "not", "a", "day", "you", "are", "nice", "rude"]
PROMPTS = ["the cat is", "you are", "a dog is very", "the day is not", "you are a", "the dog"]


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<pad>", "<eos>", "<bos>", "<unk>", *WORDS])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(single="$A", special_tokens=[])
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>"
    )


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    """A 2-block GPT-2 (random weights, seed 0) + word-level tokenizer saved as a fairl model folder."""
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
    model = GPT2LMHeadModel(cfg)
    return save_lm(model, tok, tmp_path_factory.mktemp("tiny") / "base", base="local")


class CountingReward:
    """reward = fraction of words that are 'good'; records every call."""

    __name__ = "good_fraction"

    def __init__(self):
        self.calls: list[list[str]] = []

    def __call__(self, completions: list[str]) -> list[float]:
        self.calls.append(list(completions))
        return [sum(w == "good" for w in c.split()) / max(len(c.split()), 1) for c in completions]


def _cfg(**kw) -> rlhf.RLHFConfig:
    base = {
        "algorithm": "rloo",
        "steps": 3,
        "prompts_per_step": 2,
        "generations_per_prompt": 3,
        "lr": 1e-3,
        "beta": 0.05,
        "max_new_tokens": 5,
        "trainable_top_blocks": 1,
        "eval_every": 2,
        "eval_batch_size": 4,
        "save_steps": 0,
        "seed": 0,
    }
    base.update(kw)
    return rlhf.RLHFConfig(**base)


def test_rloo_integration(tiny_base, tmp_path):
    reward = CountingReward()
    evals: list[list[str]] = []

    def eval_fn(completions):
        evals.append(completions)
        return {"good_rate": float(np.mean([("good" in c) for c in completions]))}

    cfg = _cfg()
    path, hist = rlhf.train_policy(
        str(tiny_base),
        PROMPTS,
        reward,
        cfg,
        tmp_path / "run",
        eval_prompts=PROMPTS[:4],
        eval_fn=eval_fn,
        verbose=False,
    )
    # the callable received decoded completion strings, one call per step, P*G of them
    assert len(reward.calls) == cfg.steps
    assert all(len(c) == cfg.completions_per_step for c in reward.calls)
    assert all(isinstance(t, str) for c in reward.calls for t in c)
    assert not any(p in t for c in reward.calls for t in c for p in ("<pad>", "<eos>", "<bos>"))
    # history: one row per step plus step 0, finite reward and KL
    train_rows = hist[hist.step > 0]
    assert list(train_rows.step) == [1, 2, 3]
    assert np.isfinite(train_rows.reward).all() and np.isfinite(train_rows.kl).all()
    assert ((train_rows.reward >= 0) & (train_rows.reward <= 1)).all()
    # evaluation at 0, every 2 steps and at the end; each on all eval prompts
    assert sorted(hist.dropna(subset=["eval_good_rate"]).step) == [0, 2, 3]
    assert all(len(e) == 4 for e in evals)
    # the saved policy loads and is marked complete
    assert (tmp_path / "run" / rlhf.DONE_FILE).exists()
    info = json.loads((tmp_path / "run" / rlhf.DONE_FILE).read_text())
    assert info["params"]["trainable"] < info["params"]["total"]
    lm = load_lm(path)
    assert lm.model.config.n_layer == 2
    # a second call returns the finished run without training
    again = CountingReward()
    path2, hist2 = rlhf.train_policy(str(tiny_base), PROMPTS, again, cfg, tmp_path / "run", verbose=False)
    assert path2 == path and not again.calls and len(hist2) == len(hist)


def test_rloo_changes_only_top_block(tiny_base, tmp_path):
    from safetensors.torch import load_file

    cfg = _cfg(steps=2, eval_every=0)
    path, _ = rlhf.train_policy(
        str(tiny_base), PROMPTS, CountingReward(), cfg, tmp_path / "run", verbose=False
    )
    before, after = load_file(tiny_base / "model.safetensors"), load_file(path / "model.safetensors")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, "no parameter moved"
    assert all(k.startswith(("transformer.h.1.", "transformer.ln_f.")) for k in changed), changed


def test_rloo_resumes_from_checkpoint(tiny_base, tmp_path):
    """A 4-step run killed during step 3 (after its step-2 checkpoint) resumes at step 3."""
    cfg = _cfg(steps=4, save_steps=2, eval_every=0)
    part = tmp_path / "part"

    class Killed(Exception):
        pass

    seen = CountingReward()

    def dying_reward(completions):
        if len(seen.calls) == 2:
            raise Killed
        return seen(completions)

    with pytest.raises(Killed):
        rlhf.train_policy(str(tiny_base), PROMPTS, dying_reward, cfg, part, verbose=False)
    assert (part / "checkpoints" / "checkpoint-2").is_dir()
    assert not (part / rlhf.DONE_FILE).exists()
    resumed = CountingReward()
    _, hist = rlhf.train_policy(str(tiny_base), PROMPTS, resumed, cfg, part, verbose=False)
    assert len(resumed.calls) == 2  # steps 3 and 4 only
    assert list(hist[hist.step > 0].step) == [1, 2, 3, 4]
    assert not (part / "checkpoints").exists()
    info = json.loads((part / rlhf.DONE_FILE).read_text())
    assert info["resumed_from"].endswith("checkpoint-2")


def test_reward_count_mismatch_is_a_clear_error(tiny_base, tmp_path):
    with pytest.raises(ValueError, match="one float per completion"):
        rlhf.train_policy(
            str(tiny_base),
            PROMPTS,
            lambda c: [0.0],
            _cfg(steps=1, eval_every=0),
            tmp_path / "run",
            verbose=False,
        )


def test_text_reward_module_matches_callable(tiny_base):
    from trl.experimental.utils import get_reward

    lm = load_lm(tiny_base)
    tok = lm.tokenizer
    reward = CountingReward()
    context = 4
    queries = rlhf.fixed_left_pad_collator(tok.pad_token_id, context)(
        [{"input_ids": tok(p)["input_ids"]} for p in ["the cat", "you are a", "dog"]]
    )["input_ids"]
    responses = [["good", "good", "day", "<eos>"], ["bad"], ["good", "is", "nice"]]
    resp = torch.full((3, 5), tok.pad_token_id, dtype=torch.long)
    for i, r in enumerate(responses):
        ids = tok.convert_tokens_to_ids(r)
        resp[i, : len(ids)] = torch.tensor(ids)
    query_responses = torch.cat([queries, resp], dim=1)
    module = rlhf.make_text_reward_module(tok, reward, context_length=context)
    _, scores, _ = get_reward(module, query_responses, tok.pad_token_id, context)
    texts = module.calls[-1]
    assert texts == ["good good day", "bad", "good is nice"]
    assert torch.allclose(scores, torch.tensor(reward(texts), dtype=torch.float32))
    assert isinstance(module, torch.nn.Module)


def test_ppo_integration(tiny_base, tmp_path):
    reward = CountingReward()
    cfg = _cfg(algorithm="ppo", steps=2, prompts_per_step=2, generations_per_prompt=2, ppo_epochs=1)
    path, hist = rlhf.train_policy(
        str(tiny_base),
        PROMPTS,
        reward,
        cfg,
        tmp_path / "run",
        eval_prompts=PROMPTS[:2],
        eval_fn=lambda c: 0.5,
        verbose=False,
    )
    assert len(reward.calls) == cfg.steps
    assert all(
        len(c) == cfg.completions_per_step and all(isinstance(t, str) for t in c) for c in reward.calls
    )
    rows = hist[hist.step > 0]
    assert list(rows.step) == [1, 2]
    assert np.isfinite(rows.reward).all() and np.isfinite(rows.kl).all()
    assert (rows.step_time_s > 0).all()
    assert math.isclose(hist.loc[hist.step == 0, "eval_score"].item(), 0.5)
    assert (path / "model.safetensors").exists()


def test_config_validation():
    with pytest.raises(ValueError, match="Valid: rloo, ppo"):
        rlhf.RLHFConfig(algorithm="dpo")
    with pytest.raises(ValueError, match="generations_per_prompt >= 2"):
        rlhf.RLHFConfig(algorithm="rloo", generations_per_prompt=1)
    assert rlhf.RLHFConfig(prompts_per_step=8, generations_per_prompt=4).completions_per_step == 32
