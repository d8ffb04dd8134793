"""analysis/failure_path.py: the flip shares of a failure path R_F, and the learned flip share, which
leaves out what R_F's random init flips. On synthetic pairs."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from fairl_lib.analysis import failure_path as FP
from fairl_lib.analysis.pairset import PairSet, preference_data
from fairl_lib.irl import (
    FA_METHODS,
    IRLConfig,
    RewardModel,
    load_reward,
    method_spec,
    save_reward,
    train_grid,
    train_one,
)
from fairl_lib.irl.fairl import DualPathReward
from fairl_lib.irl.grid import _init_run

SEEDS = [0, 1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


class Grid:
    """What failure_path_summary reads of a grid: ``rewards = {(method, seed): RewardModel}``."""

    def __init__(self, runs) -> None:
        self.rewards = {(r.method, r.seed): r.reward for r in runs}


@pytest.fixture(scope="module")
def pairs(synthetic_pairs) -> PairSet:
    return synthetic_pairs


@pytest.fixture(scope="module")
def untrained(pairs):
    """FA runs with lr = 0: every path stays at its init (Adam moves nothing), one grid per failure head."""
    data = preference_data(pairs, "train")
    return {fh: train_grid(data, IRLConfig(hidden=8, fail_head=fh, lr=0.0, max_epochs=2, patience=1,
                                           n_seeds=len(SEEDS)), methods=list(FA_METHODS), seeds=SEEDS)
            for fh in ("linear", "mlp")}


@pytest.fixture(scope="module")
def trained(pairs):
    """FA runs with the penalty scale at 0 (R_F free of the L2 pull), both failure heads."""
    data = preference_data(pairs, "train")
    return {fh: train_grid(data, IRLConfig(hidden=8, fail_head=fh, penalty_scale=0.0, max_epochs=40,
                                           n_seeds=len(SEEDS)), methods=list(FA_METHODS), seeds=SEEDS)
            for fh in ("linear", "mlp")}


def _equal(a, b) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("fail_head", ["linear", "mlp"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_initial_failure_path_is_the_first_parameters_of_both_trainers(fail_head, dtype):
    cfg = IRLConfig(head="mlp", fail_head=fail_head, hidden=8)
    spec = method_spec("mm_fa_gt")
    for seed in (0, 3):
        model = DualPathReward(12, cfg, seed, spec, dtype)                 # train_one's model before any step
        first = {k: v.detach() for k, v in model.failure.theta.items()}
        assert _equal(first, _init_run(seed, spec, 12, cfg, dtype)[1])      # train_grid's
        trained_shape = RewardModel(dict(model.base.theta), first, {"seed": seed, "config": dataclasses.asdict(cfg)})
        assert _equal(FP.initial_failure_path(trained_shape), first)
        as_dataclass = RewardModel(dict(model.base.theta), first, {"seed": seed, "config": cfg})
        assert _equal(FP.initial_failure_path(as_dataclass), first)


@pytest.mark.parametrize("fail_head", ["linear", "mlp"])
def test_a_run_trained_with_lr_zero_ends_at_the_recomputed_init(untrained, pairs, fail_head, tmp_path):
    """Training that moves nothing (lr = 0) returns exactly the trainers' init: train_grid, train_one and
    a saved-and-loaded reward (config as a dict) all give back the recomputed initial failure path."""
    grid = untrained[fail_head]
    assert len(grid.runs) == len(FA_METHODS) * len(SEEDS)
    for run in grid.runs:
        assert _equal(FP.initial_failure_path(run.reward), run.reward.failure), (run.method, run.seed)
    run = grid.runs[-1]
    one = train_one(preference_data(pairs, "train"), run.method, run.seed, grid.config)
    assert _equal(one.reward.failure, run.reward.failure)
    assert _equal(FP.initial_failure_path(one.reward), one.reward.failure)
    loaded = load_reward(save_reward(tmp_path / "r", run.reward))
    assert isinstance(loaded.meta["config"], dict)
    assert _equal(FP.initial_failure_path(loaded), run.reward.failure)


def test_an_untrained_failure_path_flips_pairs_but_learns_nothing(untrained, trained, pairs):
    for grid in untrained.values():
        summary = FP.failure_path_summary(Grid(grid.runs), pairs)
        assert set(summary) == set(FA_METHODS)
        for s in summary.values():
            assert s["flip_share_mean"] >= 0.02                              # the random init flips pairs ...
            assert s["flip_share_init_mean"] == s["flip_share_mean"]
            assert s["learned_flip_share_mean"] == s["learned_flip_share_max"] == 0.0   # ... nothing learned
            assert s["acts"] is False
    # a trained base path with R_F put back to its init: the init alone flips pairs, the learned share is 0
    train = pairs.split("train")
    for grid in trained.values():
        for run in grid.runs:
            frozen = RewardModel(run.reward.base, FP.initial_failure_path(run.reward), run.reward.meta)
            shares = FP.flip_shares(frozen, train)
            assert shares["flip_share"] == shares["flip_share_init"] and shares["learned_flip_share"] == 0.0
        frozen_grid = Grid(grid.runs)
        frozen_grid.rewards = {k: RewardModel(r.base, FP.initial_failure_path(r), r.meta)
                               for k, r in frozen_grid.rewards.items()}
        summary = FP.failure_path_summary(frozen_grid, pairs)
        assert max(s["flip_share_mean"] for s in summary.values()) >= 0.02   # the plain share would say "acts"
        assert not any(s["acts"] for s in summary.values())


def test_a_trained_failure_path_with_penalty_zero_learns(trained, pairs):
    train = pairs.split("train")
    for grid in trained.values():
        summary = FP.failure_path_summary(Grid(grid.runs), pairs)
        for m, s in summary.items():
            runs = grid.by_method(m)
            shares = [FP.flip_shares(r.reward, train) for r in runs]
            assert s["learned_flip_share_mean"] > 0
            assert s["learned_flip_share_mean"] == pytest.approx(np.mean([x["learned_flip_share"] for x in shares]))
            assert (s["learned_flip_share_min"], s["learned_flip_share_max"]) == (
                min(x["learned_flip_share"] for x in shares), max(x["learned_flip_share"] for x in shares))
            assert s["flip_share_init_mean"] == pytest.approx(np.mean([x["flip_share_init"] for x in shares]))
            assert s["flip_share_mean"] == pytest.approx(np.mean([FP.flip_share(r.reward, train) for r in runs]))
            assert s["acts"] == FP.acts(s["flip_share_mean"], s["flip_share_init_mean"]) and s["n_runs"] == 2
            assert FP.learned_flip_share(runs[0].reward, train) == shares[0]["learned_flip_share"]
        assert FP.failure_path_summary(Grid(grid.runs), pairs, min_flip_share=1.0)[FA_METHODS[0]]["acts"] is False


def test_acting_needs_two_percent_and_more_than_the_init():
    """Acts: flips >= 2% of the pairs against R_D alone and more than its initialisation did. A path that only
    shrank its init (flipping fewer pairs than the init) does not act, however much it 'learned'."""
    assert FP.acts(0.03, 0.01)
    assert not FP.acts(0.03, 0.05)   # shrank its init
    assert not FP.acts(0.019, 0.0)   # below 2%
    assert not FP.acts(0.05, 0.05)   # the init's flips, nothing more
    assert FP.acts(0.05, 0.01, min_flip_share=0.05) and not FP.acts(0.05, 0.01, min_flip_share=0.06)


def test_seed_config_and_edge_cases(trained, pairs):
    run = trained["mlp"].runs[0]
    reward, train = run.reward, pairs.split("train")
    no_seed = RewardModel(reward.base, reward.failure, {k: v for k, v in reward.meta.items() if k != "seed"})
    with pytest.raises(ValueError, match="seed"):
        FP.initial_failure_path(no_seed)
    assert _equal(FP.initial_failure_path(no_seed, seed=run.seed), FP.initial_failure_path(reward))
    summary = FP.failure_path_summary(type("G", (), {"rewards": {(run.method, run.seed): no_seed}})(), pairs)
    assert summary[run.method]["learned_flip_share_mean"] == FP.learned_flip_share(reward, train)  # the key's seed
    with pytest.raises(ValueError, match="config"):
        FP.initial_failure_path(RewardModel(reward.base, reward.failure, {"seed": 0}))
    wrong = {**reward.meta, "config": {**reward.meta["config"], "fail_head": "linear"}}
    with pytest.raises(ValueError, match="do not\\s+belong"):
        FP.initial_failure_path(RewardModel(reward.base, reward.failure, wrong))
    base_only = RewardModel(reward.base, None, {"seed": 0})
    assert FP.initial_failure_path(base_only) is None
    assert FP.flip_shares(base_only, train) == {"flip_share": 0.0, "flip_share_init": 0.0, "learned_flip_share": 0.0}
    empty = FP.flip_shares(reward, train.subset(np.zeros(len(train), bool)))
    assert all(np.isnan(v) for v in empty.values())
