"""bf16 autocast against fp32 (``[gen]`` / ``[rlhf]`` ``precision``, :mod:`fairl_lib.llm.fast.precision`): seconds
per ``generate`` call and how far bf16 log-probabilities move, on the cpu profile's real models and prompts.

For each model: ``--repeats`` calls of ``models.generate`` on ``--batch`` pair prompts (notebook 02's,
20 new tokens, the profile's ``[gen]`` settings), fp32, bf16 as autocast alone does it (``bf16_recast``:
every fp32 weight cast again at every token) and bf16 as the library does it (``bf16``: the linear
weights cast once per call, ``precision.bf16_weights``), alternating in one process after one warm-up
each (median seconds, the ratios, and whether the two bf16 ways wrote the same text); then the fp32 samples are scored token by token under
both precisions: the median and 95th percentile of |log p_bf16 - log p_fp32| per token and of their
sum per completion (the size of the rounding RLHF's KL term and the samples see).

    python benchmarks/precision.py                        # both models, ~3 minutes on an idle 2-core machine
    python benchmarks/precision.py --models smollm2-135m --repeats 2

Needs the data mirror (FAIRL_DATA_MIRROR) and a CPU with native bf16 for a meaningful ratio (the JSON
records ``cpu_bf16``). Prints one line per model, then ONE JSON line last. Run it on idle cores.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["smollm2-135m", "gemma3-270m"])
    p.add_argument("--batch", type=int, default=64, help="prompts per generate() call (the [gen] batch size)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per precision, median reported")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--profile", default="cpu")
    return p.parse_args(argv)


def logprob_drift(lm, prompts: list[str], completions: list[str]) -> dict[str, float]:
    """|log p_bf16 - log p_fp32| of the given completions' tokens: per token and summed per completion."""
    import torch

    from fairl_lib.llm.models import encode
    from fairl_lib.llm.fast.precision import autocast

    per_token, per_seq = [], []
    for p, c in zip(prompts, completions):
        ids_p = encode(lm.tokenizer, [p], lm.spec)[0]
        ids_c = lm.tokenizer(c, add_special_tokens=False).input_ids
        if not ids_c:
            continue
        ids = torch.tensor([ids_p + ids_c])
        with torch.inference_mode():
            lp = []
            for precision in ("fp32", "bf16"):
                with autocast(precision):
                    logits = lm.model(ids).logits.float()
                lp.append(torch.log_softmax(logits[0, len(ids_p) - 1:-1], -1).gather(-1, ids[0, len(ids_p):, None])[:, 0])
        d = (lp[1] - lp[0]).abs()
        per_token += d.tolist()
        per_seq.append(float((lp[1] - lp[0]).sum().abs()))

    def q(xs: list[float], f: float) -> float:
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(f * len(xs)))]

    return {"token_abs_median": q(per_token, 0.5), "token_abs_p95": q(per_token, 0.95),
            "completion_abs_median": q(per_seq, 0.5), "completion_abs_p95": q(per_seq, 0.95),
            "n_completions": len(per_seq), "n_tokens": len(per_token)}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import torch

    from fairl_lib.config import make_config
    from fairl_lib.llm import models
    from fairl_lib.llm.models import generate, load_lm
    from fairl_lib.llm.fast.precision import cpu_has_bf16
    from fairl_lib.stages.pairs import pair_prompts

    torch.set_num_threads(args.threads)
    os.environ["FAIRL_THREADS"] = str(args.threads)
    cfg = make_config(args.profile)
    prompts = list(pair_prompts(cfg)["prompt"][: args.batch])
    out: dict = {"profile": args.profile, "batch": args.batch, "threads": args.threads, "cpu_bf16": cpu_has_bf16(),
                 "loadavg_start": os.getloadavg()}
    copies = models.bf16_weights
    for name in args.models:
        lm = load_lm(name)
        variants = ("fp32", "bf16_recast", "bf16")
        settings = {v: dataclasses.replace(cfg.gen, batch_size=args.batch, precision=v[:4]) for v in variants}
        times: dict[str, list[float]] = {v: [] for v in variants}
        samples, same_text = None, True
        for r in range(args.repeats + 1):
            texts = {}
            for v in variants:
                # bf16_recast: without the per-call weight copies, autocast casts every weight at every token
                models.bf16_weights = (lambda m, p: contextlib.nullcontext(m)) if v == "bf16_recast" else copies
                t = time.perf_counter()
                texts[v] = generate(lm.model, lm.tokenizer, prompts, settings[v], seed=r, spec=lm.spec)
                if r:
                    times[v].append(time.perf_counter() - t)
            models.bf16_weights = copies
            samples = samples or texts["fp32"]
            same_text = same_text and texts["bf16"] == texts["bf16_recast"]
        med = {v: statistics.median(x) for v, x in times.items()}
        drift = logprob_drift(lm, prompts, samples)
        out[name] = {"fp32_s": med["fp32"], "bf16_recast_s": med["bf16_recast"], "bf16_s": med["bf16"],
                     "speedup": med["fp32"] / med["bf16"], "copies_speedup": med["bf16_recast"] / med["bf16"],
                     "bf16_same_text_as_recast": same_text,
                     **{f"{v}_runs_s": [round(x, 2) for x in times[v]] for v in variants}, "logprob_drift": drift}
        print(f"[{name}] generate {args.batch} x {cfg.gen.max_new_tokens} tokens: fp32 {med['fp32']:.2f} s, "
              f"bf16 recast at every token {med['bf16_recast']:.2f} s, bf16 with weight copies {med['bf16']:.2f} s "
              f"({med['fp32'] / med['bf16']:.2f}x fp32, {med['bf16_recast'] / med['bf16']:.2f}x recast; same text: "
              f"{same_text}); |dlogp| per token median {drift['token_abs_median']:.4f}, per completion median "
              f"{drift['completion_abs_median']:.3f}", flush=True)
    out["loadavg_end"] = os.getloadavg()
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
