"""fairl_lib.llm.fast.sampling: the inverse-CDF draw has the law softmax(scores), never picks a zero-probability
token, is seeded, and reaches generate() (also trl's RLOO rollouts, see test_rlhf)."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from fairl_lib.llm import models
from fairl_lib.llm.fast.sampling import InverseCDFSampler, inverse_cdf_sample, sampling_processors


def test_inverse_cdf_frequencies_match_probabilities():
    probs = torch.tensor([0.5, 0.3, 0.2, 0.0])
    scores = probs.log().expand(40_000, -1)                      # log 0 = -inf: a suppressed token
    torch.manual_seed(0)
    counts = torch.bincount(inverse_cdf_sample(scores), minlength=4).double()
    n = counts.sum().item()
    assert counts[3] == 0
    for k in range(3):
        sd = math.sqrt(n * probs[k] * (1 - probs[k]))
        assert abs(counts[k] - n * probs[k]) < 4 * sd, (k, counts.tolist())


def test_inverse_cdf_is_seeded_and_refuses_empty_rows():
    scores = torch.randn(8, 50)
    torch.manual_seed(3)
    a = inverse_cdf_sample(scores)
    torch.manual_seed(3)
    assert torch.equal(a, inverse_cdf_sample(scores)) and a.shape == (8,)
    with pytest.raises(ValueError, match="no finite entry"):
        inverse_cdf_sample(torch.full((2, 5), float("-inf")))


def test_processor_output_makes_argmax_the_drawn_token():
    scores = torch.randn(6, 30)
    torch.manual_seed(1)
    want = inverse_cdf_sample(scores)
    torch.manual_seed(1)
    out = InverseCDFSampler()(torch.zeros(6, 1, dtype=torch.long), scores.clone())
    assert torch.equal(out.argmax(-1), want)
    assert torch.isinf(out).sum() == 6 * 29


def test_warpers_only_when_active():
    assert [type(p).__name__ for p in sampling_processors(1.0, 0, 1.0)] == ["InverseCDFSampler"]
    names = [type(p).__name__ for p in sampling_processors(0.7, 5, 0.9)]
    assert names == ["TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper", "InverseCDFSampler"]


def test_unknown_sampler_is_refused():
    with pytest.raises(ValueError, match="Valid: inverse_cdf, multinomial"):
        models.GenSettings(sampler="gumbel")


@pytest.mark.parametrize("vocab", [3, 1024, 2500])
def test_two_level_search_equals_one_cumulative_sum(vocab):
    """The block search picks the token a single float64 cumulative sum over the row would pick
    for the same uniform draw (vocabularies below, at and not a multiple of the block size)."""
    g = torch.Generator().manual_seed(vocab)
    scores = 3 * torch.randn(200, vocab, generator=g)
    scores[:, ::7] = float("-inf")                                   # suppressed tokens, some at block edges
    torch.manual_seed(9)
    got = inverse_cdf_sample(scores)
    torch.manual_seed(9)
    w = torch.exp(scores - scores.amax(-1, keepdim=True)).double()
    cdf = w.cumsum(-1)
    u = torch.rand((200, 1), dtype=torch.float64) * cdf[:, -1:]
    want = torch.searchsorted(cdf, u, right=True).squeeze(-1)
    assert torch.equal(got, want)
    assert not bool(torch.isinf(scores.gather(1, got[:, None])).any())


def test_inplace_draw_leaves_the_same_token():
    scores = torch.randn(4, 3000)
    torch.manual_seed(2)
    a = inverse_cdf_sample(scores)
    torch.manual_seed(2)
    b = inverse_cdf_sample(scores.clone(), inplace=True)
    assert torch.equal(a, b)
