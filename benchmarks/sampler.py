"""Milliseconds per token draw: ``torch.multinomial`` (Hugging Face's ``do_sample``) against the
inverse-CDF draw of :mod:`fairl_lib.llm.fast.sampling`, on the vocabularies of the cpu profile's models.

For each vocabulary (SmolLM2-135M: 49,152; Gemma-3-270M: 262,144) and batch, random logits are
turned into probabilities once; then each draw is timed alone (median of ``--repeats`` after a
warm-up): ``multinomial_ms`` = ``torch.multinomial(probs, 1)``, ``inverse_cdf_ms`` =
``sampling.inverse_cdf_sample(logits)`` (which includes its own softmax, so it is the whole cost).
One decoding step of a batch of B rows draws once, so these are per generated token per batch.

    python benchmarks/sampler.py                   # batches 16, 32, 64; about 30 seconds
    python benchmarks/sampler.py --batches 64 --repeats 5

Prints one line per case, then ONE JSON line last. Run it on idle cores.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

VOCABS = {"smollm2-135m": 49_152, "gemma3-270m": 262_144}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", type=int, nargs="+", default=[16, 32, 64], help="rows per draw")
    p.add_argument("--repeats", type=int, default=10, help="timed draws per case, median reported")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def main(argv: list[str] | None = None) -> dict:
    import torch

    from fairl_lib.llm.fast.sampling import inverse_cdf_sample

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cases = []
    load0 = os.getloadavg()[0]
    for model, vocab in VOCABS.items():
        for b in args.batches:
            logits = torch.randn(b, vocab)
            probs = torch.softmax(logits, -1)
            multi = median_ms(lambda: torch.multinomial(probs, 1), args.repeats)
            icdf = median_ms(lambda: inverse_cdf_sample(logits), args.repeats)
            case = {"model": model, "vocab": vocab, "batch": b, "multinomial_ms": round(multi, 2),
                    "inverse_cdf_ms": round(icdf, 2), "speedup": round(multi / icdf, 2)}
            print(f"{model:13s} V={vocab:7d} B={b:3d}  multinomial {multi:7.1f} ms  inverse CDF {icdf:6.1f} ms"
                  f"  ({multi / icdf:.1f}x)", flush=True)
            cases.append(case)
    out = {"cases": cases, "threads": args.threads, "repeats": args.repeats, "torch": torch.__version__,
           "loadavg_start": load0, "loadavg_end": os.getloadavg()[0]}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
