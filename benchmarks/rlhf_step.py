"""Seconds per RLOO step of the cpu profile's expert: with and without the shared frozen trunk, and
two runs side by side in one-thread worker processes (what notebook 08 does with ``[rerlhf] workers``).

Each variant trains ``--steps`` real RLOO steps (SmolLM2-135M, the profile's ``[rlhf]`` settings, the
BiLSTM ground-truth reward, RealToxicityPrompts training prompts, no held-out evaluation, no
checkpoints) in a fresh temporary folder, and reports the median ``step_time_s`` of the history
(training only). The first two variants run in this process with ``--threads`` threads:

- ``plain``: ``FastRLOOSettings.share_frozen_trunk = False`` (every log-prob pass runs all 30 blocks);
- ``trunk``: ``FastRLOOSettings.share_frozen_trunk = True`` (the 24 frozen blocks run once per batch);
- ``trunk_bf16``: ``trunk`` under bf16 autocast (``[rlhf] precision = "bf16"``, :mod:`fairl_lib.llm.fast.precision`;
  only on a CPU with native bf16, where the JSON's ``bf16_speedup`` = trunk / trunk_bf16);
- ``parallel``: two ``trunk`` runs at once in two one-thread processes (``fairl_lib.llm.fast.parallel``);
  ``parallel_s_per_step_of_both`` = their median step time / 2, to compare with ``trunk``.

The trunk variants run the library's defaults: the old-log-prob pass serves the loss
(``FastRLOOSettings.reuse_old_pass``) and the trunk runs each repeated prompt once (``[rlhf] share_prefix``,
``FrozenTrunk.shared_prefix``). On a CPU with native bf16 two more variants undo them, to measure each:
``trunk_bf16_before`` (neither) and
``trunk_bf16_reuse`` (the old pass reused, the trunk over every row); the JSON's ``reuse_speedup`` =
before / reuse, ``trunk_prefix_speedup`` = reuse / trunk_bf16. ``--skip-before`` skips them. The
default also takes the frozen trunk from the rollouts' decoding (``FastRLOOSettings.trunk_from_rollouts``,
``FrozenTrunk.from_rollouts``); ``trunk_bf16_computed`` computes it as before, and
``rollouts_speedup`` = trunk_bf16_computed / trunk_bf16. ``--only-rollouts`` runs just those two bf16
variants and the same pair in fp32 (``trunk_computed``, ``trunk``; ``rollouts_speedup_fp32``), the
precision an AVX2 machine runs. Variants train from the same seed, so step *k* of each sees the same prompts: the JSON's
``*_paired`` entries give the median of the step-by-step ratios and in how many steps the default was
faster.

    python benchmarks/rlhf_step.py                # 6 steps per variant, about 8 minutes
    python benchmarks/rlhf_step.py --steps 2 --skip-parallel
    python benchmarks/rlhf_step.py --steps 8 --threads 1 --only-rollouts --skip-parallel

Prints progress, then ONE JSON line last. The machine is shared: the JSON records the load average.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="cpu")
    p.add_argument("--steps", type=int, default=6, help="RLOO steps per variant (6)")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the in-process variants (2)")
    p.add_argument("--skip-parallel", action="store_true", help="skip the two-process variant")
    p.add_argument("--skip-plain", action="store_true", help="skip the variant without the shared trunk")
    p.add_argument("--parallel-precision", default="fp32", help="precision of the two-process variant (fp32)")
    p.add_argument("--skip-before", action="store_true",
                   help="skip the bf16 variants without the old-pass reuse and the trunk's shared prompts")
    p.add_argument("--only-rollouts", action="store_true",
                   help="only the default and the same without the trunk taken from the rollouts "
                        "(fp32, and bf16 on a CPU with native bf16)")
    return p.parse_args(argv)


def run_variant(profile: str, steps: int, share: bool, out_dir: str, precision: str = "fp32",
                reuse_old_pass: bool = True, trunk_prefix: bool = True, from_rollouts: bool = True) -> list[float]:
    """Train ``steps`` RLOO steps; return the step times (a module-level function: a worker job).
    ``trunk_prefix=False`` makes the trunk run every row in full (``FrozenTrunk.shared_prefix`` off);
    ``from_rollouts=False`` computes the trunk instead of taking it from the rollouts."""
    from fairl_lib.config import make_config
    from fairl_lib.llm import rlhf
    from fairl_lib.llm.fast.rloo import FastRLOOSettings
    from fairl_lib.llm.fast.trunk import FrozenTrunk
    from fairl_lib.llm.scorers import toxicity_reward
    from fairl_lib.stages.expert import REWARD_KIND, rlhf_prompts

    cfg = make_config(profile)
    fast = FastRLOOSettings(share_frozen_trunk=share, reuse_old_pass=reuse_old_pass, trunk_from_rollouts=from_rollouts)
    rc = dataclasses.replace(cfg.rlhf, steps=steps, eval_every=0, save_steps=0, precision=precision, fast=fast)
    train, _ = rlhf_prompts(cfg)
    shared_prefix = FrozenTrunk.shared_prefix
    if not trunk_prefix:
        FrozenTrunk.shared_prefix = lambda *a, **k: None
    try:
        _, hist = rlhf.train_policy(cfg.models.base_lm, list(train["prompt"]),
                                    toxicity_reward(cfg.models.ground_truth, REWARD_KIND), rc, Path(out_dir), verbose=False)
    finally:
        FrozenTrunk.shared_prefix = shared_prefix
    return [float(x) for x in hist.loc[hist.step > 0, "step_time_s"]]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import torch

    from fairl_lib.llm.fast.parallel import run_jobs

    torch.set_num_threads(args.threads)
    os.environ["FAIRL_THREADS"] = str(args.threads)
    out: dict[str, Any] = {"profile": args.profile, "steps": args.steps, "threads": args.threads,
                           "loadavg_start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        from fairl_lib.llm.fast.precision import cpu_has_bf16

        variants = [("plain", False, "fp32", True, True, True)] * (not args.skip_plain) + [
            ("trunk", True, "fp32", True, True, True)]
        if cpu_has_bf16():
            variants += [("trunk_bf16_before", True, "bf16", False, False, False),
                         ("trunk_bf16_reuse", True, "bf16", True, False, False)] * (not args.skip_before)
            variants += [("trunk_bf16_computed", True, "bf16", True, True, False), ("trunk_bf16", True, "bf16", True, True, True)]
        if args.only_rollouts:
            variants = [("trunk_computed", True, "fp32", True, True, False)] + [
                v for v in variants if v[0] in ("trunk", "trunk_bf16_computed", "trunk_bf16")]
        for name, share, precision, reuse, trunk_prefix, from_rollouts in variants:
            t = time.perf_counter()
            secs = run_variant(args.profile, args.steps, share, f"{tmp}/{name}", precision, reuse, trunk_prefix,
                               from_rollouts)
            out[f"{name}_s_per_step"] = statistics.median(secs)
            out[f"{name}_steps_s"] = [round(s, 2) for s in secs]
            print(f"[{name}] median {statistics.median(secs):.2f} s/step ({time.perf_counter() - t:.0f} s)", flush=True)
        if not args.skip_parallel:
            jobs = [(args.profile, args.steps, True, f"{tmp}/parallel{i}", args.parallel_precision) for i in range(2)]
            both = run_jobs(run_variant, jobs, workers=2)
            med = statistics.median([s for secs in both for s in secs])
            out.update(parallel_s_per_step_each=med, parallel_s_per_step_of_both=med / 2,
                       parallel_steps_s=[[round(s, 2) for s in secs] for secs in both])
            print(f"[parallel] two one-thread runs: median {med:.2f} s/step each, {med / 2:.2f} per step of both",
                  flush=True)
    if "plain_s_per_step" in out:
        out["trunk_speedup"] = out["plain_s_per_step"] / out["trunk_s_per_step"]
    if "trunk_bf16_s_per_step" in out and "trunk_s_per_step" in out:
        out["bf16_speedup"] = out["trunk_s_per_step"] / out["trunk_bf16_s_per_step"]
    if "trunk_bf16_before_s_per_step" in out:
        out["reuse_speedup"] = out["trunk_bf16_before_s_per_step"] / out["trunk_bf16_reuse_s_per_step"]
        out["trunk_prefix_speedup"] = out["trunk_bf16_reuse_s_per_step"] / out["trunk_bf16_s_per_step"]
        out["third_round_speedup"] = out["trunk_bf16_before_s_per_step"] / out["trunk_bf16_s_per_step"]
    if "trunk_bf16_computed_s_per_step" in out:
        out["rollouts_speedup"] = out["trunk_bf16_computed_s_per_step"] / out["trunk_bf16_s_per_step"]
    if "trunk_computed_s_per_step" in out:
        out["rollouts_speedup_fp32"] = out["trunk_computed_s_per_step"] / out["trunk_s_per_step"]
    for before, after in (("trunk_bf16_before", "trunk_bf16"), ("trunk_bf16_reuse", "trunk_bf16"),
                          ("trunk_bf16_computed", "trunk_bf16"), ("trunk_computed", "trunk")):
        if f"{before}_steps_s" in out and f"{after}_steps_s" in out:
            ratios = [a / b for a, b in zip(out[f"{before}_steps_s"], out[f"{after}_steps_s"])]
            out[f"{before}_paired"] = {"median_ratio": statistics.median(ratios),
                                       "default_faster_steps": sum(r > 1 for r in ratios), "steps": len(ratios)}
    out["cpu_bf16"] = cpu_has_bf16()
    out["loadavg_end"] = os.getloadavg()
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
