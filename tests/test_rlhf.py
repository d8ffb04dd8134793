"""RLHF trainer integration (fairl_lib.llm.rlhf) on a tiny randomly initialised GPT-2.

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

from fairl_lib.llm import rlhf
from fairl_lib.llm.fast import rloo as fast_rloo
from fairl_lib.llm.fast.rloo import FastRLOOSettings
from fairl_lib.llm.models import load_lm, save_lm

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


def test_rloo_rollouts_are_sampled_by_the_chosen_sampler(tiny_llama, tmp_path):
    """The inverse-CDF sampler runs trl's generate greedily over its processors: if they did not
    reach generate, the G completions of a prompt would be identical (greedy); top_k=1 makes both
    samplers greedy, so their first rollouts then agree exactly (later ones differ: the samplers use
    different amounts of the shared random stream, which dropout and trl also draw from)."""
    calls = {}
    for name, kw in {"icdf": {}, "icdf_top1": {"top_k": 1},
                     "multinomial_top1": {"top_k": 1, "sampler": "multinomial"}}.items():
        reward = CountingReward()
        rlhf.train_policy(str(tiny_llama), PROMPTS, reward, _cfg(steps=2, eval_every=0, **kw), tmp_path / name,
                          verbose=False)
        calls[name] = reward.calls
    g = _cfg().generations_per_prompt
    groups = [step[i:i + g] for step in calls["icdf"] for i in range(0, len(step), g)]
    assert any(len(set(grp)) > 1 for grp in groups)
    assert calls["icdf_top1"][0] == calls["multinomial_top1"][0]
    assert all(len(set(step[i:i + g])) == 1 for step in calls["icdf_top1"] for i in range(0, len(step), g))


def test_config_validation():
    with pytest.raises(ValueError, match="Valid: rloo, ppo"):
        rlhf.RLHFConfig(algorithm="dpo")
    with pytest.raises(ValueError, match="generations_per_prompt >= 2"):
        rlhf.RLHFConfig(algorithm="rloo", generations_per_prompt=1)
    assert rlhf.RLHFConfig(prompts_per_step=8, generations_per_prompt=4).completions_per_step == 32
    with pytest.raises(ValueError, match="Unknown sampler"):
        rlhf.RLHFConfig(sampler="beam")


# --------------------------------------------------------------------------- shared frozen trunk


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    """A 3-block Llama (random weights, seed 0): the architecture family the trunk is built for."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return save_lm(LlamaForCausalLM(cfg), tok, tmp_path_factory.mktemp("tiny_llama") / "base", base="local")


def _policy_and_ref(path, top_blocks=1):
    policy, ref = load_lm(path).model, load_lm(path).model
    rlhf.freeze_lower_blocks(policy, top_blocks)
    ref.requires_grad_(False)
    return policy, ref


def _batch(seed=0, rows=5, width=9):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 18, (rows, width), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding, as in trl's prompt batches
    mask[3, :1] = 0
    return ids, mask


def test_frozen_trunk_is_exact_for_logits_and_gradients(tiny_llama):
    from fairl_lib.llm.fast.trunk import FrozenTrunk

    ids, mask = _batch()
    perm = torch.tensor([3, 0, 4, 1, 2])
    plain_pol, plain_ref = _policy_and_ref(tiny_llama)
    pol, ref = _policy_and_ref(tiny_llama)
    trunk = FrozenTrunk(n_frozen=2)
    trunk.attach(pol, [ref])
    assert trunk.n_models == 2

    def passes(policy, reference, ctx):
        with ctx(), torch.no_grad():
            old = policy(input_ids=ids, attention_mask=mask, use_cache=False).logits
            r = reference(input_ids=ids, attention_mask=mask, use_cache=False).logits
        with ctx():  # the training pass sees the rows shuffled, as trl does
            policy.zero_grad()
            train = policy(input_ids=ids[perm], attention_mask=mask[perm], use_cache=False).logits
            (train.float() * mask[perm, :, None]).sum().backward()
        grads = {n: p.grad.clone() for n, p in policy.named_parameters() if p.requires_grad}
        return old, r, train.detach(), grads

    import contextlib

    expected = passes(plain_pol, plain_ref, contextlib.nullcontext)
    got = passes(pol, ref, trunk.active)
    assert (trunk.misses, trunk.hits) == (1, 2)  # the lower blocks ran once for three passes
    # old and reference passes: bit-identical; the training pass sees its rows in another order,
    # and a GEMM's rounding depends on row order, so there: equal to float rounding
    assert torch.equal(expected[0], got[0]) and torch.equal(expected[1], got[1])
    torch.testing.assert_close(got[2], expected[2], rtol=1e-5, atol=1e-6)
    assert expected[3].keys() == got[3].keys() and expected[3]
    for n in expected[3]:
        torch.testing.assert_close(got[3][n], expected[3][n], rtol=1e-5, atol=1e-6)
    # a new batch misses, and outside active() nothing is looked up
    ids2, mask2 = _batch(seed=1)
    with trunk.active(), torch.no_grad():
        pol(input_ids=ids2, attention_mask=mask2, use_cache=False)
    with torch.no_grad():
        pol(input_ids=ids, attention_mask=mask, use_cache=False)
    assert (trunk.misses, trunk.hits) == (2, 2)


def _rollout_batch(prompts=3, generations=3, prompt_width=6, completion_width=4, seed=2):
    """An RLOO-shaped batch: each prompt (left padded) repeated ``generations`` times in a row, then
    each row's own completion (right padded after an early stop)."""
    g = torch.Generator().manual_seed(seed)
    p_ids = torch.randint(4, 18, (prompts, prompt_width), generator=g)
    p_mask = torch.ones_like(p_ids)
    p_mask[1, :2] = 0
    p_mask[2, :4] = 0
    rows = prompts * generations
    c_ids = torch.randint(4, 18, (rows, completion_width), generator=g)
    c_mask = torch.ones_like(c_ids)
    c_mask[1, 2:] = 0
    c_mask[5, 1:] = 0
    ids = torch.cat([p_ids.repeat_interleave(generations, 0), c_ids], 1)
    mask = torch.cat([p_mask.repeat_interleave(generations, 0), c_mask], 1)
    return ids, mask, prompt_width


def test_frozen_trunk_runs_a_repeated_prompt_once_with_the_same_logits(tiny_llama):
    """``prefix_width``: the trunk runs each distinct prompt once and the rows' completions on its
    key/value cache. Logits at the positions that matter (every real token) equal the full pass's to
    float rounding; the reference pass then hits the stored trunk, and rows that do not repeat (or a
    width of 0) take the plain path."""
    from fairl_lib.llm.fast.trunk import FrozenTrunk

    ids, mask, width = _rollout_batch()
    plain_pol, plain_ref = _policy_and_ref(tiny_llama)
    pol, ref = _policy_and_ref(tiny_llama)
    trunk = FrozenTrunk(n_frozen=2)
    trunk.attach(pol, [ref])
    with torch.no_grad():
        want = plain_pol(input_ids=ids, attention_mask=mask, use_cache=False).logits
        want_ref = plain_ref(input_ids=ids, attention_mask=mask, use_cache=False).logits
        trunk.prefix_width = width
        with trunk.active():
            got = pol(input_ids=ids, attention_mask=mask, use_cache=False).logits
            got_ref = ref(input_ids=ids, attention_mask=mask, use_cache=False).logits
    real = mask.bool()
    assert (trunk.misses, trunk.hits, trunk.prefix_hits) == (1, 1, 1)
    torch.testing.assert_close(got[real], want[real], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_ref[real], want_ref[real], rtol=1e-5, atol=1e-5)
    assert len(pol.model.layers) == 3 and not isinstance(pol.model.norm, torch.nn.Identity)  # put back
    # no repeated rows: nothing to share, the plain trunk (bit-identical to the plain pass)
    ids2, mask2 = _batch(seed=3)
    with torch.no_grad(), trunk.active():
        alone = pol(input_ids=ids2, attention_mask=mask2, use_cache=False).logits
    assert trunk.prefix_hits == 1
    assert torch.equal(alone, plain_pol(input_ids=ids2, attention_mask=mask2, use_cache=False).logits.detach())


@pytest.mark.parametrize("share_prefix", [True, False])
def test_frozen_trunk_from_the_rollouts_decoding_matches_the_computed_trunk(tiny_llama, share_prefix):
    """``trunk_from_rollouts``: the last frozen layer's outputs kept while decoding RLOO rollouts (each
    prompt repeated, left padded; prefilled once or per row) give the log-prob pass over trl's rows
    (completions cut after the first end-of-sequence token and right padded) the logits of the
    computed trunk at every position whose logits are kept; the reference pass then hits the store,
    and a row the rollouts did not write takes the computed trunk."""
    from fairl_lib.llm.fast.prefix import generate_shared_prefix
    from fairl_lib.llm.fast.trunk import FrozenTrunk, completion_mask

    tok = load_lm(tiny_llama).tokenizer
    plain_pol, _ = _policy_and_ref(tiny_llama)
    pol, ref = _policy_and_ref(tiny_llama)
    trunk = FrozenTrunk(n_frozen=2)
    trunk.attach(pol, [ref])
    enc = [tok(p)["input_ids"] for p in ["the cat is", "you are a", "the dog"] for _ in range(3)]
    width = max(map(len, enc))
    p_ids = torch.tensor([[tok.pad_token_id] * (width - len(e)) + e for e in enc])
    p_mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in enc])
    gen = generate_shared_prefix if share_prefix else (lambda m, **k: m.generate(**k))
    torch.manual_seed(0)
    with torch.no_grad(), trunk.capturing() as steps:
        seqs = gen(pol, input_ids=p_ids, attention_mask=p_mask, max_new_tokens=6, do_sample=True,
                   pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    seqs[1, width + 2] = tok.eos_token_id  # one row ends early, as trl then masks it
    assert trunk.keep_rollouts(p_ids, p_mask, seqs, steps, tok.eos_token_id) == len(enc)
    comp = seqs[:, width:]
    c_mask = completion_mask(comp, tok.eos_token_id)  # trl's mask: up to and including the first eos
    assert c_mask[1, 3:].sum() == 0
    comp = comp.masked_fill(c_mask == 0, tok.pad_token_id)
    ids, mask = torch.cat([p_ids, comp], 1), torch.cat([p_mask, c_mask], 1)
    keep = comp.shape[1]
    with torch.no_grad():
        want = plain_pol(input_ids=ids, attention_mask=mask, use_cache=False).logits
        trunk.completion_width = keep
        with trunk.active():
            got = pol(input_ids=ids, attention_mask=mask, use_cache=False).logits
            again = ref(input_ids=ids, attention_mask=mask, use_cache=False).logits
        trunk.completion_width = 0
    assert (trunk.rollout_hits, trunk.hits, trunk.misses) == (1, 1, 1)
    # the kept logits (trl's logits_to_keep + 1, minus the last column) where their target is unmasked
    used = c_mask.bool()
    torch.testing.assert_close(got[:, -keep - 1:-1][used], want[:, -keep - 1:-1][used], rtol=1e-5, atol=1e-5)
    assert torch.isfinite(again).all()
    other = ids.clone()
    other[0, -1] = (other[0, -1] + 1) % 18  # a completion the rollouts did not write
    with torch.no_grad():
        trunk.completion_width = keep
        with trunk.active():
            pol(input_ids=other, attention_mask=mask, use_cache=False)
        trunk.completion_width = 0
    assert trunk.rollout_hits == 1 and trunk.misses == 2


def test_completion_mask_keeps_up_to_the_first_eos():
    from fairl_lib.llm.fast.trunk import completion_mask

    comp = torch.tensor([[5, 2, 7, 2], [5, 6, 7, 8], [2, 2, 3, 4]])
    assert completion_mask(comp, 2).tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    assert completion_mask(comp, None).tolist() == [[1] * 4] * 3


def test_frozen_trunk_leaves_generation_alone_and_refuses_other_weights(tiny_llama):
    from fairl_lib.llm.models import GenSettings, generate
    from fairl_lib.llm.fast.trunk import FrozenTrunk

    lm = load_lm(tiny_llama)
    pol, ref = _policy_and_ref(tiny_llama)
    with torch.no_grad():
        ref.model.layers[0].mlp.up_proj.weight.add_(0.01)  # not the policy's lower weights any more
    trunk = FrozenTrunk(n_frozen=2)
    trunk.attach(pol, [ref])
    assert trunk.n_models == 1  # the different model runs its own layers
    settings = GenSettings(max_new_tokens=4, batch_size=3, max_prompt_tokens=0)
    want = generate(lm.model, lm.tokenizer, PROMPTS, settings, seed=3, spec=lm.spec)
    with trunk.active():  # generation uses a KV cache: the trunk must not interfere
        got = generate(pol, lm.tokenizer, PROMPTS, settings, seed=3, spec=lm.spec)
    assert got == want
    with pytest.raises(ValueError, match="frozen"):
        FrozenTrunk(n_frozen=3).attach(pol)  # the top block is trainable


def test_completion_nll_of_several_models_shares_their_equal_lower_layers(tiny_llama):
    """Base, an 'expert' and an 'unlearned expert' that differ only in the top block: one call gives each
    model's own NLLs (as one call per model does), runs the two equal lower blocks once per batch, and
    leaves the models as they were. A model whose embedding differs shares nothing."""
    from fairl_lib.llm.models import completion_nll, completion_nll_models
    from fairl_lib.llm.fast.trunk import shared_lower_layers

    base, expert, unlearned = (load_lm(tiny_llama) for _ in range(3))
    with torch.no_grad():
        expert.model.model.layers[2].mlp.up_proj.weight.mul_(1.5)
        unlearned.model.model.layers[2].self_attn.q_proj.weight.add_(0.05)
    models = [base.model, expert.model, unlearned.model]
    assert shared_lower_layers(models) == 2 and shared_lower_layers(models[:1]) == 0
    prompts = PROMPTS * 3
    comps = ["good day", "", "very nice dog", "cat", "the the", "is", "not a", "good", "you", "day is nice"] * 2
    comps = comps[: len(prompts)]
    want = [completion_nll(m, base.tokenizer, prompts, comps, batch_size=4, share_prefix=False) for m in models]
    calls = []
    for i, m in enumerate(models):
        layer = m.model.layers[0]
        orig = layer.forward
        layer.forward = lambda *a, _orig=orig, _i=i, **k: (calls.append(_i), _orig(*a, **k))[1]
    nlls, count = completion_nll_models(models, base.tokenizer, prompts, comps, batch_size=4)
    n_batches = len(calls)
    assert n_batches > 0 and set(calls) == {0}  # only the first model ran the shared lower blocks
    for (w, c), got in zip(want, nlls):
        np.testing.assert_array_equal(count, c)
        np.testing.assert_allclose(got, w, rtol=0, atol=1e-9)
    assert len({tuple(np.round(n, 6)) for n in nlls}) == 3  # three different models, three answers
    calls.clear()  # detached: each model runs its own lower blocks again
    again = completion_nll(expert.model, base.tokenizer, prompts, comps, batch_size=4, share_prefix=False)[0]
    np.testing.assert_allclose(again, want[1][0], rtol=0, atol=1e-9)
    assert set(calls) == {1}
    with torch.no_grad():
        unlearned.model.get_input_embeddings().weight.add_(0.01)
    assert shared_lower_layers(models) == 0


def test_generation_with_bf16_weight_copies_writes_the_same_text(tiny_llama, monkeypatch):
    """models.generate under bf16 holds the linear weights as bf16 copies for the call (cast once, not at
    every token) and writes exactly what it wrote with autocast casting every weight at every token."""
    import contextlib

    from fairl_lib.llm import models

    lm = load_lm(tiny_llama)
    settings = models.GenSettings(max_new_tokens=6, batch_size=4, max_prompt_tokens=0, precision="bf16",
                                  share_prefix=False)
    casts = []
    real = models.bf16_weights

    def counting(m, p):
        casts.append(p)
        return real(m, p)

    monkeypatch.setattr(models, "bf16_weights", counting)
    with_copies = models.generate(lm.model, lm.tokenizer, PROMPTS, settings, seed=5, spec=lm.spec)
    assert casts == ["bf16"]  # one cast for the whole call (two batches)
    monkeypatch.setattr(models, "bf16_weights", lambda m, p: contextlib.nullcontext(m))
    without = models.generate(lm.model, lm.tokenizer, PROMPTS, settings, seed=5, spec=lm.spec)
    assert with_copies == without and len(with_copies) == len(PROMPTS)
    assert all(p.dtype == torch.float32 for p in lm.model.parameters())


def test_bf16_rloo_with_weight_copies_for_rollouts_trains_the_same_policy(tiny_llama, tmp_path, monkeypatch):
    """A bf16 RLOO run decodes its rollouts with bf16 weight copies (precision.bf16_weights): the rollouts
    are the ones autocast writes anyway, so the trained policy is bit-identical to a run without the
    copies, every saved weight is fp32, and the optimiser trained the model's own parameters."""
    import contextlib

    from safetensors.torch import load_file

    cfg = _cfg(steps=2, eval_every=0, precision="bf16")
    a, _ = rlhf.train_policy(str(tiny_llama), PROMPTS, CountingReward(), cfg, tmp_path / "copies", verbose=False)
    monkeypatch.setattr(fast_rloo, "bf16_weights", lambda m, p: contextlib.nullcontext(m))
    b, _ = rlhf.train_policy(str(tiny_llama), PROMPTS, CountingReward(), cfg, tmp_path / "plain", verbose=False)
    wa, wb, w0 = (load_file(p / "model.safetensors") for p in (a, b, tiny_llama))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert all(v.dtype == torch.float32 for v in wa.values())
    assert any(not torch.equal(wa[k], w0[k]) for k in wa)  # it trained


def test_rloo_with_frozen_trunk_matches_plain_rloo(tiny_llama, tmp_path):
    runs = {}
    for share in (True, False):
        cfg = _cfg(steps=3, eval_every=0, fast=FastRLOOSettings(share_frozen_trunk=share, reuse_old_pass=False))
        path, hist = rlhf.train_policy(str(tiny_llama), PROMPTS, CountingReward(), cfg, tmp_path / str(share),
                                       verbose=False)
        info = json.loads((tmp_path / str(share) / rlhf.DONE_FILE).read_text())["speedups"]
        runs[share] = (hist, load_lm(path).model.state_dict(), info)
    assert runs[True][2]["frozen_trunk_layers"] == 2 and runs[True][2]["frozen_trunk_models"] == 2
    assert runs[True][2]["trunk_hits"] == 2 * 3  # reference + training pass, every step
    assert runs[False][2]["trunk_hits"] == 0
    cols = ["reward", "kl", "loss"]
    np.testing.assert_allclose(runs[True][0][cols].to_numpy(), runs[False][0][cols].to_numpy(), rtol=1e-4, atol=1e-6)
    for k in runs[False][1]:
        torch.testing.assert_close(runs[True][1][k], runs[False][1][k], rtol=1e-4, atol=1e-6)


def test_rloo_taking_the_trunk_from_the_rollouts_matches_computing_it(tiny_llama, tmp_path):
    """``trunk_from_rollouts``: an RLOO run whose log-prob passes take the frozen trunk from the rollouts'
    decoding agrees step for step with one that computes it (rewards, KL, loss, trained weights) up to
    float rounding, and takes it from the rollouts at every step."""
    runs = {}
    for keep in (True, False):
        cfg = _cfg(steps=3, eval_every=2, fast=FastRLOOSettings(trunk_from_rollouts=keep))
        path, hist = rlhf.train_policy(str(tiny_llama), PROMPTS, CountingReward(), cfg, tmp_path / str(keep),
                                       verbose=False, eval_prompts=PROMPTS[:4], eval_fn=lambda c: {"n": len(c)})
        info = json.loads((tmp_path / str(keep) / rlhf.DONE_FILE).read_text())["speedups"]
        runs[keep] = (hist, load_lm(path).model.state_dict(), info)
    assert runs[True][2]["trunk_rollout_hits"] == 3 and runs[False][2]["trunk_rollout_hits"] == 0
    assert runs[True][2]["trunk_prefix_hits"] == 0 and runs[False][2]["trunk_prefix_hits"] == 3
    cols = ["reward", "kl", "loss"]
    train = runs[False][0]["reward"].notna()
    np.testing.assert_allclose(runs[True][0].loc[train, cols].to_numpy(), runs[False][0].loc[train, cols].to_numpy(),
                               rtol=1e-4, atol=1e-6)
    for k, v in runs[False][1].items():
        torch.testing.assert_close(runs[True][1][k], v, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_rloo_loss_reusing_the_old_pass_matches_a_second_forward(tiny_llama, tmp_path, precision):
    """``reuse_old_pass``: the loss backpropagates through the old-log-prob pass of its step instead of
    running the policy again (trl shuffles the rows in between; they are matched by content). The
    runs agree step for step (rewards, KL, loss, trained weights) up to float rounding, the policy
    runs one full-sequence forward per step instead of two, and the trunk serves one pass fewer."""
    from fairl_lib.llm.fast.precision import cpu_has_bf16

    if precision == "bf16" and not cpu_has_bf16():
        pytest.skip("bf16 autocast is only used on a CPU with native bf16")
    runs = {}
    for reuse in (True, False):
        forwards = []
        cls = fast_rloo.fast_rloo_trainer_class()
        orig = cls._logps

        def counting(self, model, *a, _orig=orig, **k):
            forwards.append(model is self.model)
            return _orig(self, model, *a, **k)

        cls._logps = counting
        try:
            cfg = _cfg(steps=3, eval_every=0, fast=FastRLOOSettings(reuse_old_pass=reuse), precision=precision)
            path, hist = rlhf.train_policy(str(tiny_llama), PROMPTS, CountingReward(), cfg, tmp_path / str(reuse),
                                           verbose=False)
        finally:
            cls._logps = orig
        info = json.loads((tmp_path / str(reuse) / rlhf.DONE_FILE).read_text())["speedups"]
        runs[reuse] = (hist, load_lm(path).model.state_dict(), info, forwards)
    assert runs[True][2]["old_pass_reused"] == 3 and runs[False][2]["old_pass_reused"] == 0
    assert sum(runs[True][3]) == 3 and sum(runs[False][3]) == 6  # policy passes: one a step instead of two
    assert runs[True][2]["trunk_hits"] == 3 and runs[False][2]["trunk_hits"] == 6  # the reference's only
    cols = ["reward", "kl", "loss"]
    tol = {"rtol": 1e-4, "atol": 1e-6} if precision == "fp32" else {"rtol": 1e-2, "atol": 1e-3}
    np.testing.assert_allclose(runs[True][0][cols].to_numpy(), runs[False][0][cols].to_numpy(), **tol)
    moved = 0
    for k, v in runs[False][1].items():
        torch.testing.assert_close(runs[True][1][k], v, **tol)
        moved += not torch.equal(v, load_lm(tiny_llama).model.state_dict()[k])
    assert moved > 0  # both trained


def test_same_rows_finds_the_reordering_or_none():
    assert fast_rloo.same_rows(["a", "b", "a", "c"], ["c", "a", "b", "a"]).tolist() in ([3, 2, 1, 0], [3, 0, 1, 2])
    assert fast_rloo.same_rows(["a", "b"], ["a", "c"]) is None and fast_rloo.same_rows(["a"], ["a", "a"]) is None


def test_rloo_with_shared_prefix_matches_plain_rollouts(tiny_llama, tmp_path, monkeypatch):
    """``share_prefix`` (one prefill per prompt for its G rollouts, and one trunk pass per prompt in the
    log-prob passes) draws the same completions from the same random stream as plain generate, so the
    runs agree step for step."""
    import transformers

    prefills = []

    class CountingCache(transformers.DynamicCache):  # fairl_lib.llm.fast.prefix makes one per shared prefill
        def __init__(self, *a, **k):
            prefills.append(1)
            super().__init__(*a, **k)

    monkeypatch.setattr(transformers, "DynamicCache", CountingCache)
    runs = {}
    for share in (True, False):
        reward = CountingReward()
        cfg = _cfg(steps=2, eval_every=0, share_prefix=share, fast=FastRLOOSettings(trunk_from_rollouts=False))  # the trunk's own prompts
        _, hist = rlhf.train_policy(str(tiny_llama), PROMPTS, reward, cfg, tmp_path / str(share), verbose=False)
        runs[share] = (reward.calls, hist)
        if share:
            assert len(prefills) == 2 * 2  # per step: the rollouts' prefill and the frozen trunk's prompts
    assert len(prefills) == 2 * 2
    assert runs[True][0] == runs[False][0]
    cols = ["reward", "kl", "loss"]
    np.testing.assert_allclose(runs[True][1][cols].to_numpy(), runs[False][1][cols].to_numpy(), rtol=1e-4, atol=1e-6)


def test_recorder_prints_step_of_total_reward_kl_and_eta(tmp_path, capsys):
    """With ``verbose`` the recorder prints a start line, then ``[label] step k/N | s/step | reward |
    KL | elapsed | ETA`` (the first and the last step always; between them at most one line per 30 s)
    and each held-out evaluation; lines are plain text, one per print."""
    cfg = _cfg(steps=4)
    rec = rlhf._Recorder(tmp_path, cfg, [], None, None, None, verbose=True, label="rerlhf fa_irl")
    rec.add(0, {"eval_tox_rate": 0.25, "eval_seconds": 2.0})
    rec.start_clock()
    for step in (1, 2, 3, 4):
        rec.add(step, {"reward": 0.5 + step / 10, "kl": 0.01 * step})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[rerlhf fa_irl] held-out evaluation at step 0: tox rate 0.25 (2 s)"
    assert lines[1] == f"[rerlhf fa_irl] rloo: 4 steps of {cfg.completions_per_step} completions"
    first, last = lines[2], lines[-1]
    assert len(lines) == 4  # steps 2 and 3 came within 30 s of the line of step 1
    assert first.startswith("[rerlhf fa_irl] step 1/4 (25%) | ") and "reward 0.6 | KL 0.01" in first and "ETA" in first
    assert last.startswith("[rerlhf fa_irl] step 4/4 (100%) | ") and "reward 0.9 | KL 0.04" in last
    assert "ETA" not in last  # nothing left


def test_progress_lines_are_throttled_and_resume_aware():
    from fairl_lib.llm.progress import Progress, fmt_duration

    now = [0.0]
    out = []

    class Sink:
        def write(self, text):
            out.append(text)

        def flush(self):
            pass

    p = Progress(10, "pairs post", every_seconds=30, unit="chunk", initial=2, stream=Sink(), clock=lambda: now[0])
    for t, expect in ((10, True), (20, False), (45, True), (50, False)):  # chunks 3, 4, 5, 6
        now[0] = t
        assert (p.update() is not None) == expect
    assert out[0] == "[pairs post] chunk 3/10 (30%) | 10.0 s/chunk | elapsed 10s | ETA 1m10s\n"
    assert out[1].startswith("[pairs post] chunk 5/10 (50%) | 15.0 s/chunk")  # 45 s for the 3 done here
    now[0] = 51
    assert p.update(10).startswith("[pairs post] chunk 10/10 (100%)")  # the last always prints
    assert fmt_duration(42) == "42s" and fmt_duration(185) == "3m05s" and fmt_duration(3720) == "1h02m"
