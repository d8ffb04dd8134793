"""bf16 autocast against fp32 (``[gen]`` / ``[rlhf]`` ``precision``, :mod:`fairl_lib.llm.precision`): seconds
per ``generate`` call and how far bf16 log-probabilities move, on the cpu profile's real models and prompts.

For each model: ``--repeats`` calls of ``models.generate`` on ``--batch`` pair prompts (notebook 02's,
20 new tokens, the profile's ``[gen]`` settings), fp32 and bf16 alternating in one process after one
warm-up each (median seconds and the ratio); then the fp32 samples are scored token by token under
both precisions: the median and 95th percentile of |log p_bf16 - log p_fp32| per token and of their
sum per completion (the size of the rounding RLHF's KL term and the samples see).

    python benchmarks/precision.py                        # both models, ~3 minutes on an idle 2-core machine
    python benchmarks/precision.py --models smollm2-135m --repeats 2

Needs the data mirror (FAIRL_DATA_MIRROR) and a CPU with native bf16 for a meaningful ratio (the JSON
records ``cpu_bf16``). Prints one line per model, then ONE JSON line last. Run it on idle cores.
"""
from __future__ import annotations

import argparse
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
    from fairl_lib.llm.precision import autocast

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
    from fairl_lib.llm.models import generate, load_lm
    from fairl_lib.llm.precision import cpu_has_bf16
    from fairl_lib.stages.pairs import pair_prompts

    torch.set_num_threads(args.threads)
    os.environ["FAIRL_THREADS"] = str(args.threads)
    cfg = make_config(args.profile)
    prompts = list(pair_prompts(cfg)["prompt"][: args.batch])
    out: dict = {"profile": args.profile, "batch": args.batch, "threads": args.threads, "cpu_bf16": cpu_has_bf16(),
                 "loadavg_start": os.getloadavg()}
    for name in args.models:
        lm = load_lm(name)
        settings = {p: dataclasses.replace(cfg.gen, batch_size=args.batch, precision=p) for p in ("fp32", "bf16")}
        times: dict[str, list[float]] = {"fp32": [], "bf16": []}
        samples = None
        for r in range(args.repeats + 1):
            for p in ("fp32", "bf16"):
                t = time.perf_counter()
                comp = generate(lm.model, lm.tokenizer, prompts, settings[p], seed=r, spec=lm.spec)
                if r:
                    times[p].append(time.perf_counter() - t)
                if p == "fp32" and samples is None:
                    samples = comp
        med = {p: statistics.median(v) for p, v in times.items()}
        drift = logprob_drift(lm, prompts, samples)
        out[name] = {"fp32_s": med["fp32"], "bf16_s": med["bf16"], "speedup": med["fp32"] / med["bf16"],
                     "fp32_runs_s": [round(x, 2) for x in times["fp32"]],
                     "bf16_runs_s": [round(x, 2) for x in times["bf16"]], "logprob_drift": drift}
        print(f"[{name}] generate {args.batch} x {cfg.gen.max_new_tokens} tokens: fp32 {med['fp32']:.2f} s, "
              f"bf16 {med['bf16']:.2f} s ({med['fp32'] / med['bf16']:.2f}x); |dlogp| per token median "
              f"{drift['token_abs_median']:.4f}, per completion median {drift['completion_abs_median']:.3f}",
              flush=True)
    out["loadavg_end"] = os.getloadavg()
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
