"""Cost of the equal-budget hyper-parameter search (fairl_lib.stages.tuning) at the cpu profile's size.

Synthetic preference pairs with a known reward (fairl_lib.analysis.pairset.synthetic_pairset), shaped
like the cpu profile's pairs: 4,000 pairs of 384-d unit-norm embeddings, 5 pairs per prompt, 20% of
the prompts in the test split (so ~3,200 training pairs, of which the tuning split holds out
``tuning.val_fraction`` of the prompts). The IRL and tuning settings are the cpu profile's
(``--overrides`` changes them, as a notebook's OVERRIDES would). Measures, in a fresh results root:

- ``one_trial_s``: one trial per method at ``cfg.irl``'s own settings (``train_grid`` of the method on
  the tune-train pairs with ``tuning.trial_seeds`` seeds, then the validation AUC and the flip share);
- ``search_s``: the whole search (stage ``irl_tuning``: every method x ``tuning.n_trials`` trials),
  with ``search_trial_s`` the per-method sums of its trials' seconds;
- ``best_s``: the best-against-best grids (stage ``irl_best``: each winner x ``tuning.best_seeds``
  seeds on the full training split).

Prints progress, then ONE JSON line last, with the CPU (``lscpu``) and the load average before and after:

    .venv/bin/python benchmarks/tuning.py                     # the cpu profile's search (~8 min on 2 cores)
    .venv/bin/python benchmarks/tuning.py --only-trial        # one trial per method (~1 min)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time

import numpy as np
import torch

from fairl_lib.analysis.pairset import PairSet, split_by_prompt, synthetic_pairset


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=4000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--pairs-per-prompt", type=int, default=5)
    p.add_argument("--profile", default="cpu")
    p.add_argument("--overrides", default="", help='e.g. "tuning.n_trials=14; tuning.trial_seeds=1"')
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = torch's default)")
    p.add_argument("--only-trial", action="store_true", help="time one trial per method, not the search")
    p.add_argument("--data-seed", type=int, default=0)
    return p.parse_args(argv)


def cpu_model() -> dict:
    """Model name, family and model of the CPU, from ``lscpu``."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {"cpu": "unknown", "cpus": os.cpu_count()}
    f = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in text.splitlines() if ":" in line)}
    return {"cpu": f.get("Model name", "?"), "cpu_family_model": f"{f.get('CPU family', '?')}/{f.get('Model', '?')}",
            "cpus": os.cpu_count(), "avx512f": "avx512f" in f.get("Flags", "").split(),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}


def cpu_size_pairs(n: int, dim: int, per_prompt: int, seed: int, test_fraction: float = 0.2) -> PairSet:
    """Synthetic pairs shaped like the cpu profile's: ``per_prompt`` pairs per prompt, split by prompt."""
    ps = synthetic_pairset(n, dim, seed=seed)
    df = ps.df.assign(prompt_id=(ps.df["pair_id"] // per_prompt).astype(str))
    df["split"] = split_by_prompt(df["prompt_id"].to_numpy(), test_fraction, seed)
    return PairSet(df, ps.emb_pre, ps.emb_post, ps.meta)


def run(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    root = tempfile.mkdtemp(prefix="fairl-tuning-bench-")
    os.environ["FAIRL_RESULTS"] = root                    # a fresh stage cache: nothing is reused
    from fairl_lib.analysis.pairset import preference_data
    from fairl_lib.config import make_config
    from fairl_lib.irl import FA_METHODS, train_grid
    from fairl_lib.stages import tuning as T

    cfg = make_config(args.profile, overrides=args.overrides)
    tc = cfg.tuning
    load0 = os.getloadavg()
    ps = cpu_size_pairs(args.pairs, args.dim, args.pairs_per_prompt, args.data_seed)
    tr, va = T.tuning_split(ps, tc.val_fraction, tc.split_seed)
    data_tr = preference_data(tr, None)
    out: dict = {"pairs": args.pairs, "train_pairs": len(ps.split("train")), "tune_train_pairs": len(tr),
                 "tune_val_pairs": len(va), "dim": args.dim, "profile": args.profile, "overrides": args.overrides,
                 "irl": {k: getattr(cfg.irl, k) for k in ("head", "hidden", "max_epochs", "patience", "lr")},
                 "tuning": {k: getattr(tc, k) for k in ("n_trials", "trial_seeds", "best_seeds", "max_epochs",
                                                        "startup_trials", "threads")},
                 "threads": torch.get_num_threads(), "one_trial_s": {}, "one_trial_epochs": {}}
    seeds = list(range(tc.trial_seeds))
    irl = T.trial_config(cfg.irl, {}, max_epochs=tc.max_epochs, n_seeds=len(seeds))
    for m in tc.methods:
        t0 = time.perf_counter()
        grid = train_grid(data_tr, irl, methods=[m], seeds=seeds, threads=tc.threads or None)
        auc = float(np.mean([T.validation_auc(r.reward, va) for r in grid.runs]))
        if m in FA_METHODS:
            [T.flip_share(r.reward, tr) for r in grid.runs]
        out["one_trial_s"][m] = round(time.perf_counter() - t0, 2)
        out["one_trial_epochs"][m] = [r.epochs_run for r in grid.runs]
        print(f"[trial] {m}: {out['one_trial_s'][m]:.1f} s, epochs {out['one_trial_epochs'][m]}, AUC {auc:.4f}",
              flush=True)
    if not args.only_trial:
        t0 = time.perf_counter()
        res = T.tuning_stage(cfg, ps)
        out["search_s"] = round(time.perf_counter() - t0, 1)
        out["search_trial_s"] = {m: round(float(res.trials.loc[res.trials["method"] == m, "seconds"].sum()), 1)
                                 for m in tc.methods}
        out["fa_acting_trials"] = {m: int((res.trials.loc[res.trials["method"] == m, "acting"] == True).sum())
                                   for m in tc.methods if m in FA_METHODS}
        t0 = time.perf_counter()
        T.best_stage(cfg, ps, res)
        out["best_s"] = round(time.perf_counter() - t0, 1)
        out["total_s"] = round(out["search_s"] + out["best_s"], 1)
    out["machine"] = cpu_model()
    out["loadavg_start"] = [round(x, 2) for x in load0]
    out["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    return out


if __name__ == "__main__":
    print(json.dumps(run(parse_args())), flush=True)
