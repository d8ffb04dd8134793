"""Seconds of ``models.completion_nll`` against the plain way it replaced: the same NLLs.

The plain way (kept here as :func:`plain_nll`) ran prompts and completions in the given order in batches
of 16 and applied the output layer and the log-softmax to every position, prompt included. The library's
version batches rows by length (less padding) and keeps only the positions that predict completion tokens
(``logits_to_keep``). Both run in this process, alternating, on the held-out prompts of the profile with
completions the model samples (``--samples`` per prompt); the JSON gives median seconds, the ratio, and
the largest NLL difference (float rounding only).

Then the same completions under three models of one family, as notebook 10 scores them (the unlearned
model, the expert and the base) and notebook 01 (expert and base): one ``completion_nll`` call per model
against one ``completion_nll_models`` call, which runs the lower blocks the models share once per batch.
The stand-ins for the expert and the unlearned model are the base with its top ``--top-blocks`` blocks
perturbed (the expert trains exactly those; the time does not depend on the weights' values).

Last, one model with several completions per prompt (``--prefix-samples``, as the evaluations of notebooks
01 and 08 draw 8): ``completion_nll`` with ``share_prefix=False`` (every row runs its prompt) against the
default ``share_prefix=True`` (each distinct prompt once per batch, the rows continue from its key/value
cache); the NLLs agree to float rounding.

    python benchmarks/completion_nll.py                     # SmolLM2-135M, 2 samples per prompt, ~2 minutes
    python benchmarks/completion_nll.py --models smollm2-135m gemma3-270m --repeats 3

Needs the data mirror (FAIRL_DATA_MIRROR). Prints one line per model, then ONE JSON line last.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["smollm2-135m"])
    p.add_argument("--samples", type=int, default=2, help="completions per held-out prompt")
    p.add_argument("--prefix-samples", type=int, default=8,
                   help="completions per held-out prompt of the shared-prefix comparison (0 = skip it)")
    p.add_argument("--prompts", type=int, default=0, help="use only this many held-out prompts (0 = all)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--profile", default="cpu")
    p.add_argument("--top-blocks", type=int, default=6, help="blocks the stand-in models change (the expert's 6)")
    return p.parse_args(argv)


def stand_ins(name: str, top_blocks: int, n: int = 2) -> list:
    """``n`` copies of model ``name`` whose top ``top_blocks`` blocks are perturbed (seeded noise)."""
    import torch

    from fairl_lib.llm.models import load_lm

    out = []
    for i in range(n):
        m = load_lm(name).model
        g = torch.Generator().manual_seed(i)
        with torch.no_grad():
            for layer in m.model.layers[len(m.model.layers) - top_blocks:]:
                for p in layer.parameters():
                    p.add_(torch.randn(p.shape, generator=g) * 1e-3)
        out.append(m)
    return out


def plain_nll(model, tok, prompts, completions, spec, batch_size: int = 16):
    """The previous ``completion_nll``: input order, full logits at every position."""
    import numpy as np
    import torch

    from fairl_lib.llm.models import encode

    p_ids = encode(tok, prompts, spec)
    c_ids = tok(list(completions), add_special_tokens=False)["input_ids"]
    nll = np.zeros(len(p_ids), dtype=np.float64)
    for start in range(0, len(p_ids), batch_size):
        rows = list(zip(p_ids[start:start + batch_size], c_ids[start:start + batch_size]))
        seqs = [p + c for p, c in rows]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), tok.pad_token_id, dtype=torch.long)
        mask, tmask = torch.zeros_like(ids), torch.zeros_like(ids, dtype=torch.bool)
        for i, ((p, _), s) in enumerate(zip(rows, seqs)):
            ids[i, :len(s)], mask[i, :len(s)], tmask[i, len(p):len(s)] = torch.tensor(s), 1, True
        with torch.inference_mode():
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), -1)
        tok_lp = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
        nll[start:start + len(seqs)] = -(tok_lp * tmask[:, 1:]).sum(1).double().numpy()
    return nll


def prefix_phase(lm, held: list[str], cfg, args) -> dict:
    """``completion_nll`` without and with the shared prompt prefix, ``args.prefix_samples`` completions
    per prompt (alternating, ``args.repeats`` times each)."""
    import numpy as np

    from fairl_lib.llm.models import completion_nll
    from fairl_lib.stages.generation import generate_sorted

    prompts = [p for p in held for _ in range(args.prefix_samples)]
    comps = generate_sorted(lm, prompts, cfg.gen, 2)
    times: dict[str, list[float]] = {"rows": [], "prefix": []}
    for _ in range(args.repeats):
        for key, share in (("rows", False), ("prefix", True)):
            t = time.perf_counter()
            nll = completion_nll(lm.model, lm.tokenizer, prompts, comps, spec=lm.spec, share_prefix=share)[0]
            times[key].append(time.perf_counter() - t)
            if share:
                got = nll
            else:
                want = nll
    med = {k: statistics.median(v) for k, v in times.items()}
    diff = float(np.abs(got - want).max())
    print(f"[{lm.spec.name}] {len(prompts)} completions ({args.prefix_samples} per prompt): every row its prompt "
          f"{med['rows']:.1f} s, each prompt once {med['prefix']:.1f} s ({med['rows'] / med['prefix']:.2f}x); max "
          f"|NLL difference| {diff:.1e} nats", flush=True)
    return {"prefix_rows": len(prompts), "rows_s": med["rows"], "prefix_s": med["prefix"],
            "prefix_speedup": med["rows"] / med["prefix"], "prefix_max_abs_diff_nats": diff,
            "prefix_max_rel_diff": float(np.max(np.abs(got - want) / np.maximum(np.abs(want), 1e-9)))}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import numpy as np
    import torch

    from fairl_lib.config import make_config
    from fairl_lib.llm.models import completion_nll, completion_nll_models, load_lm
    from fairl_lib.stages.expert import rlhf_prompts
    from fairl_lib.stages.generation import generate_sorted

    torch.set_num_threads(args.threads)
    os.environ["FAIRL_THREADS"] = str(args.threads)
    cfg = make_config(args.profile)
    held = rlhf_prompts(cfg)[1]["prompt"]
    held = list(held[: args.prompts] if args.prompts else held)
    prompts = [p for p in held for _ in range(args.samples)]
    out: dict = {"profile": args.profile, "rows": len(prompts), "threads": args.threads,
                 "loadavg_start": os.getloadavg()}
    for name in args.models:
        lm = load_lm(name)
        comps = generate_sorted(lm, prompts, cfg.gen, 1)
        times: dict[str, list[float]] = {"plain": [], "library": []}
        for _ in range(args.repeats):
            t = time.perf_counter()
            a = plain_nll(lm.model, lm.tokenizer, prompts, comps, lm.spec)
            times["plain"].append(time.perf_counter() - t)
            t = time.perf_counter()
            b = completion_nll(lm.model, lm.tokenizer, prompts, comps, spec=lm.spec, share_prefix=False)[0]
            times["library"].append(time.perf_counter() - t)
        trio = [lm.model] + stand_ins(name, args.top_blocks)
        times.update({"three_separate": [], "three_shared": []})
        for _ in range(args.repeats):
            t = time.perf_counter()
            sep = [completion_nll(m, lm.tokenizer, prompts, comps, spec=lm.spec, share_prefix=False)[0] for m in trio]
            times["three_separate"].append(time.perf_counter() - t)
            t = time.perf_counter()
            shared = completion_nll_models(trio, lm.tokenizer, prompts, comps, spec=lm.spec)[0]
            times["three_shared"].append(time.perf_counter() - t)
        med = {k: statistics.median(v) for k, v in times.items()}
        trio_diff = max(float(np.abs(x - y).max()) for x, y in zip(sep, shared))
        out[name] = {"plain_s": med["plain"], "library_s": med["library"], "speedup": med["plain"] / med["library"],
                     "max_abs_diff_nats": float(np.abs(a - b).max()),
                     "three_separate_s": med["three_separate"], "three_shared_s": med["three_shared"],
                     "shared_speedup": med["three_separate"] / med["three_shared"],
                     "shared_max_abs_diff_nats": trio_diff}
        print(f"[{name}] {len(prompts)} completions: plain {med['plain']:.1f} s, library {med['library']:.1f} s "
              f"({med['plain'] / med['library']:.2f}x); max |NLL difference| {np.abs(a - b).max():.1e} nats", flush=True)
        print(f"[{name}] three models: one call each {med['three_separate']:.1f} s, one call with the shared lower "
              f"blocks {med['three_shared']:.1f} s ({med['three_separate'] / med['three_shared']:.2f}x); max |NLL "
              f"difference| {trio_diff:.1e} nats", flush=True)
        if args.prefix_samples:
            out[name].update(prefix_phase(lm, held, cfg, args))
    out["loadavg_end"] = os.getloadavg()
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
