"""Seconds of the frozen trunk's pass over an RLOO batch: every row in full vs each prompt once.

An RLOO batch of the profile's expert holds ``prompts_per_step`` training prompts, each
``generations_per_prompt`` times (left padded to one width), followed by the completions the model
samples for them. ``FrozenTrunk.shared_prefix`` runs the distinct prompts once through the frozen lower
blocks into a key/value cache and each row's completion on top of it. For each precision this script
times one policy forward pass (trunk and top blocks, ``logits_to_keep`` = the completion) with the trunk
attached, ``prefix_width`` 0 (every row in full) against the prompt width (each prompt once), alternating,
and reports the largest difference of the completion tokens' log-probabilities (float rounding only).

A third way (``--rollouts``): the trunk taken from the rollouts' decoding
(``FrozenTrunk.from_rollouts``, ``FastRLOOSettings.trunk_from_rollouts``). The batch is then decoded here, with the
trunk's outputs kept (``FrozenTrunk.capturing``) and the rows built from the sampled token ids as trl
builds them (cut after the first end-of-sequence token); the pass from the rollouts (top blocks only) is
timed against the pass that computes the trunk with each prompt once, and their log-probabilities of
the completion tokens are compared.

    python benchmarks/trunk_prefix.py                            # SmolLM2-135M, fp32 and bf16, ~1 minute
    python benchmarks/trunk_prefix.py --models smollm2-135m gemma3-270m --threads 1
    python benchmarks/trunk_prefix.py --rollouts --threads 1

Needs the data mirror (FAIRL_DATA_MIRROR). Prints one line per case, then ONE JSON line last.
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
    p.add_argument("--models", nargs="+", default=["smollm2-135m"])
    p.add_argument("--profile", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0, help="which training prompts and samples")
    p.add_argument("--rollouts", action="store_true",
                   help="time the trunk taken from the rollouts against computing it (each prompt once)")
    return p.parse_args(argv)


def prompt_batch(tok, cfg, seed: int):
    """``(prompts, encoded)``: the profile's ``prompts_per_step`` training prompts drawn by ``seed``, each
    ``generations_per_prompt`` times in a row (as an RLOO batch holds them), left padded and cut to
    ``max_prompt_tokens``."""
    import random

    from fairl_lib.stages.expert import rlhf_prompts

    rc = cfg.rlhf
    train = list(rlhf_prompts(cfg)[0]["prompt"])
    prompts = [p for p in random.Random(seed).sample(train, rc.prompts_per_step) for _ in range(rc.generations_per_prompt)]
    enc = tok(prompts, padding=True, return_tensors="pt", padding_side="left", truncation=True,
              max_length=rc.max_prompt_tokens)
    return prompts, enc


def rollout_batch(lm, cfg, seed: int):
    """``(input_ids, attention_mask, prompt_width)`` of one RLOO-shaped batch: :func:`prompt_batch` and
    the model's own samples."""
    import torch

    from fairl_lib.llm.models import generate

    rc, tok = cfg.rlhf, lm.tokenizer
    prompts, enc = prompt_batch(tok, cfg, seed)
    settings = dataclasses.replace(rc.gen_settings(), batch_size=len(prompts), precision="fp32")
    comps = generate(lm.model, tok, prompts, settings, seed=seed, spec=lm.spec)
    c = tok(comps, add_special_tokens=False, padding=True, return_tensors="pt", padding_side="right",
            truncation=True, max_length=rc.max_new_tokens)
    ids = torch.cat([enc.input_ids, c.input_ids], 1)
    mask = torch.cat([enc.attention_mask, c.attention_mask], 1)
    return ids, mask, enc.input_ids.shape[1]


def one_case(lm, ids, mask, width: int, precision: str, repeats: int) -> dict:
    import torch

    from fairl_lib.llm import rlhf
    from fairl_lib.llm.fast.precision import autocast
    from fairl_lib.llm.fast.trunk import FrozenTrunk

    model = lm.model
    n_frozen = len(model.model.layers) - 6
    rlhf.freeze_lower_blocks(model, 6)
    keep = ids.shape[1] - width
    trunk = FrozenTrunk(n_frozen)
    trunk.attach(model, [])
    times = {"rows": [], "prefix": []}
    out = {}
    try:
        for _ in range(repeats + 1):  # the first round warms up
            for key, w in (("rows", 0), ("prefix", width)):
                trunk.store.clear()
                trunk.prefix_width = w
                with torch.no_grad(), autocast(precision), trunk.active():
                    t = time.perf_counter()
                    logits = model(input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=keep + 1).logits
                    times[key].append(time.perf_counter() - t)
                logp = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, ids[:, width:, None]).squeeze(-1)
                out[key] = logp[mask[:, width:].bool()]
    finally:
        trunk.detach()
    med = {k: statistics.median(v[1:]) for k, v in times.items()}
    return {"precision": precision, "rows_s": med["rows"], "prefix_s": med["prefix"],
            "speedup": med["rows"] / med["prefix"], "prefix_hits": trunk.prefix_hits,
            "max_abs_logp_diff": float((out["rows"] - out["prefix"]).abs().max())}


def rollouts_case(lm, cfg, seed: int, precision: str, repeats: int) -> dict:
    """Decode one RLOO batch keeping the trunk, then time the log-prob pass that takes the trunk from
    the rollouts against the one that computes it (each prompt once); compare their log-probs."""
    import torch

    from fairl_lib.llm import rlhf
    from fairl_lib.llm.fast.precision import autocast, bf16_weights
    from fairl_lib.llm.fast.prefix import generate_shared_prefix
    from fairl_lib.llm.fast.trunk import FrozenTrunk, completion_mask

    rc, model, tok = cfg.rlhf, lm.model, lm.tokenizer
    _, enc = prompt_batch(tok, cfg, seed)
    rlhf.freeze_lower_blocks(model, 6)
    trunk = FrozenTrunk(len(model.model.layers) - 6)
    trunk.attach(model, [])
    torch.manual_seed(seed)
    try:
        with torch.no_grad(), autocast(precision), bf16_weights(model, precision), trunk.capturing() as steps:
            seqs = generate_shared_prefix(model, input_ids=enc.input_ids, attention_mask=enc.attention_mask,
                                          max_new_tokens=rc.max_new_tokens, do_sample=True, top_k=0,
                                          pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        width = enc.input_ids.shape[1]
        kept = trunk.keep_rollouts(enc.input_ids, enc.attention_mask, seqs, steps, tok.eos_token_id)
        comp = seqs[:, width:]
        c_mask = completion_mask(comp, tok.eos_token_id)  # trl's: up to and including the first eos
        ids = torch.cat([enc.input_ids, comp.masked_fill(c_mask == 0, tok.pad_token_id)], 1)
        mask = torch.cat([enc.attention_mask, c_mask], 1)
        keep = comp.shape[1]
        times: dict[str, list[float]] = {"computed": [], "rollouts": []}
        out = {}
        for _ in range(repeats + 1):  # the first round warms up
            for key, spent in times.items():
                trunk.store.clear()
                trunk.prefix_width, trunk.completion_width = width, keep if key == "rollouts" else 0
                with torch.no_grad(), autocast(precision), trunk.active():
                    t = time.perf_counter()
                    logits = model(input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=keep + 1).logits
                    spent.append(time.perf_counter() - t)
                logp = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, ids[:, width:, None]).squeeze(-1)
                out[key] = logp[c_mask.bool()]
    finally:
        trunk.detach()
    med = {k: statistics.median(v[1:]) for k, v in times.items()}
    diff = (out["computed"] - out["rollouts"]).abs()
    return {"precision": precision, "rows": int(ids.shape[0]), "prompt_width": int(width), "width": int(ids.shape[1]),
            "rows_kept": kept, "rollout_hits": trunk.rollout_hits, "computed_s": med["computed"],
            "rollouts_s": med["rollouts"], "speedup": med["computed"] / med["rollouts"],
            "max_abs_logp_diff": float(diff.max()), "median_abs_logp_diff": float(diff.median()),
            "n_tokens": int(diff.numel())}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import torch

    from fairl_lib.config import make_config
    from fairl_lib.llm.models import load_lm
    from fairl_lib.llm.fast.precision import cpu_has_bf16

    torch.set_num_threads(args.threads)
    os.environ["FAIRL_THREADS"] = str(args.threads)
    cfg = make_config(args.profile)
    out: dict = {"profile": args.profile, "threads": args.threads, "cpu_bf16": cpu_has_bf16(),
                 "loadavg_start": os.getloadavg(), "cases": []}
    for name in args.models:
        lm = load_lm(name)
        if args.rollouts:
            for precision in ["fp32"] + ["bf16"] * cpu_has_bf16():
                case = {"model": name, **rollouts_case(lm, cfg, args.seed, precision, args.repeats)}
                out["cases"].append(case)
                print(f"[{name} {precision}] {case['rows']} rows: trunk computed {case['computed_s']:.2f} s, from the "
                      f"rollouts {case['rollouts_s']:.2f} s ({case['speedup']:.2f}x); |log-prob difference| max "
                      f"{case['max_abs_logp_diff']:.1e}, median {case['median_abs_logp_diff']:.1e} over "
                      f"{case['n_tokens']} tokens", flush=True)
            continue
        ids, mask, width = rollout_batch(lm, cfg, args.seed)
        for precision in ["fp32"] + ["bf16"] * cpu_has_bf16():
            case = {"model": name, "rows": int(ids.shape[0]), "prompt_width": int(width),
                    "width": int(ids.shape[1]), **one_case(lm, ids, mask, width, precision, args.repeats)}
            out["cases"].append(case)
            print(f"[{name} {precision}] {case['rows']} rows, prompt width {width} of {case['width']}: every row "
                  f"{case['rows_s']:.2f} s, each prompt once {case['prefix_s']:.2f} s ({case['speedup']:.2f}x); "
                  f"max |log-prob difference| {case['max_abs_logp_diff']:.1e}", flush=True)
    out["loadavg_end"] = os.getloadavg()
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
