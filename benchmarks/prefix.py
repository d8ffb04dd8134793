"""Seconds per generate() call: plain ``model.generate`` against the shared-prompt prefill of
:mod:`fairl_lib.llm.fast.prefix`, on the cpu profile's real models and real RealToxicityPrompts prompts.

Each case is a batch of ``B`` rows made of ``B // k`` distinct pair prompts (notebook 02's prompts,
in ``expert.generate_sorted``'s order) repeated ``k`` times, as the pairs stage (k = 5, B = 64), an
RLOO step (k = 4, B = 32) and the held-out evaluation (k = 2) build them; 20 new tokens sampled with
the profile's ``[gen]`` settings. Median of ``--repeats`` after one warm-up call.

    python benchmarks/prefix.py                         # both models, 3 cases, 2 threads; ~4 minutes
    python benchmarks/prefix.py --models smollm2-135m --threads 1

Needs the data mirror (FAIRL_DATA_MIRROR). Prints one line per case, then ONE JSON line last.
Run it on idle cores.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["smollm2-135m", "gemma3-270m"])
    p.add_argument("--cases", nargs="+", default=["5x64", "4x32", "2x64"],
                   help="KxB: B rows of B//K distinct prompts, each repeated K times")
    p.add_argument("--max-new-tokens", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3, help="timed calls per case, median reported")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--profile", default="cpu", help="whose pair prompts and [gen] settings")
    return p.parse_args(argv)


def _case(text: str) -> tuple[int, int]:
    k, b = (int(x) for x in text.lower().split("x"))
    if k < 1 or b < k:
        raise SystemExit(f"case {text!r}: need KxB with 1 <= K <= B (e.g. 5x64)")
    return k, b


def median_s(fn, repeats: int) -> float:
    import torch

    times = []
    for _ in range(repeats + 1):
        torch.manual_seed(0)
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:])


def main(argv: list[str] | None = None) -> dict:
    import dataclasses

    import torch

    from fairl_lib import config
    from fairl_lib.stages import pairs as pairs_mod
    from fairl_lib.llm import models
    from fairl_lib.llm.fast.prefix import generate_shared_prefix

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = config.make_config(args.profile)
    gen = dataclasses.replace(cfg.gen, max_new_tokens=args.max_new_tokens)
    prompts_all = sorted(pairs_mod.pair_prompts(cfg)["prompt"], key=lambda p: (len(p), p))
    load0 = os.getloadavg()[0]
    cases = []
    for name in args.models:
        lm = models.load_lm(name)
        kw = models.generation_kwargs(lm.tokenizer, gen)
        for text in args.cases:
            k, b = _case(text)
            start = len(prompts_all) // 2  # mid-length prompts
            rows = [p for p in prompts_all[start:start + b // k] for _ in range(k)]
            ids, mask = models._left_pad(models.prompt_ids(lm.tokenizer, rows, lm.spec, gen.max_prompt_tokens),
                                         lm.tokenizer.pad_token_id)
            with torch.inference_mode():
                plain = median_s(lambda: lm.model.generate(input_ids=ids, attention_mask=mask, **kw), args.repeats)
                shared = median_s(lambda: generate_shared_prefix(lm.model, ids, mask, **kw), args.repeats)
            case = {"model": name, "repeats_per_prompt": k, "batch": len(rows), "prompt_width": int(ids.shape[1]),
                    "plain_s": round(plain, 3), "shared_s": round(shared, 3), "speedup": round(plain / shared, 2)}
            print(f"{name:13s} {k}x{len(rows):3d} (width {ids.shape[1]:2d})  plain {plain:6.2f} s  "
                  f"shared prefill {shared:6.2f} s  ({plain / shared:.2f}x)", flush=True)
            cases.append(case)
    out = {"cases": cases, "threads": args.threads, "repeats": args.repeats, "max_new_tokens": args.max_new_tokens,
           "torch": torch.__version__, "loadavg_start": load0, "loadavg_end": os.getloadavg()[0]}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
