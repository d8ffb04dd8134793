"""Throughput of the cpu profile's models (generation, scorers, embedder), RLHF s/step, peak memory.

Targets (issue, 2 CPU cores): SmolLM2-135M generation >= 150 new tokens/s at batch 16 with 20 new
tokens; the cpu pipeline's peak memory < 12 GB. Everything runs the library's own code on real data,
with the settings of ``make_config(--profile)`` (default ``cpu``):

- generation: ``models.generate`` (the profile's ``[gen]`` sampling, prompt truncation) on
  RealToxicityPrompts training prompts (``data.ppo_prompt_toxicity``), at batch 16 and the profile's
  batch. Per batch size one warm-up batch is not timed; every repeat is a fresh batch of prompts.
  new tokens/s = batch x max_new_tokens / median seconds per batch (``generate`` computes every row
  for every step unless the whole batch stops early; ``gen_mean_new_tokens_b*`` re-tokenizes the
  completions, so early stops show). ``gen_prompt_width_b*`` is the mean left-padded prompt width:
  the prefill runs over batch x width tokens, 2.4x the decoding's tokens at width 48 and 20 new
  tokens, so the rate depends on the prompts (``--max-prompt-tokens`` cuts them shorter).
  ``--workers N`` also times N one-thread processes side by side (what the pairs stage does).
- scorers: the BiLSTM ground truth and the profanity judge (``scorers.get_scorer``) on RTP
  prompt + continuation texts, texts/s.
- embedder: MiniLM's encoder (``models.Embedder(cache=False).model.encode``, i.e. the SQLite
  embedding cache bypassed), sentences/s on the same texts.
- RLHF s/step: read, never run: ``step_time_s`` (training only, evaluation excluded) of every
  ``<results>/stages/expert/*/rlhf`` history, median and count.
- memory: this process's ``ru_maxrss``; with ``--results``, the max ``peak_rss_mb`` in its run.json.

Prints progress, then ONE JSON line last:

    python benchmarks/lm_throughput.py --results results/cpu      # full: 5 repeats
    python benchmarks/lm_throughput.py --quick                     # smoke check, tiny sizes

The machine is shared: the JSON records the load average before and after.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

FULL = {"repeats": 5, "batch_sizes": None, "max_new_tokens": None, "texts": 2048, "sentences": 512}
QUICK = {"repeats": 2, "batch_sizes": [4, 8], "max_new_tokens": 8, "texts": 128, "sentences": 32}
MEMORY_LIMIT_MB = 12 * 1024


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="cpu", help="settings from make_config(profile) (default cpu)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--repeats", type=int, help="timed repeats per measurement, median reported (5)")
    p.add_argument("--batch-sizes", type=int, nargs="+", help="generation batches (16 and the profile's)")
    p.add_argument("--max-new-tokens", type=int, help="new tokens per completion (the profile's)")
    p.add_argument("--max-prompt-tokens", type=int,
                   help="prompts keep their last N tokens (the profile's [gen] max_prompt_tokens, 48 for cpu)")
    p.add_argument("--texts", type=int, help="texts per scorer call (2048; at most the RTP rows)")
    p.add_argument("--sentences", type=int, help="sentences per embedder call (512)")
    p.add_argument("--results", type=Path, help="a results/<profile> folder: RLHF s/step, pipeline peak RSS")
    p.add_argument("--workers", type=int, default=2,
                   help="also time generation in this many one-thread processes side by side (1 = skip; 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help=f"smoke check: {QUICK}")
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.results is not None and not args.results.is_dir():
        p.error(f"--results {args.results} is not a folder (e.g. results/cpu)")
    return args


def timed(warmup: Callable[[], Any], work: Callable[[int], Any], repeats: int) -> float:
    """Median wall seconds of ``work(0..repeats-1)``, after one untimed ``warmup()``."""
    warmup()
    secs = []
    for i in range(repeats):
        t = time.perf_counter()
        work(i)
        secs.append(time.perf_counter() - t)
    return statistics.median(secs)


def bench_generation(lm, prompts: list[str], settings, repeats: int, seed: int) -> dict[str, float]:
    """New tokens/s of ``models.generate`` at ``settings.batch_size``; a fresh prompt batch per call.
    ``prompt_width``: the mean left-padded prompt width of the timed batches (the prefill runs over
    batch x width tokens, so it is most of the work when prompts are long and completions short)."""
    from fairl_lib.llm.models import generate, prompt_ids

    b = settings.batch_size
    if len(prompts) < b * (repeats + 1):
        raise SystemExit(f"need {b * (repeats + 1)} prompts for batch {b} x (1 + {repeats}); have {len(prompts)}")
    done: list[str] = []

    def run(i: int) -> None:  # i = -1: the warm-up batch
        chunk = prompts[(i + 1) * b:(i + 2) * b]
        done.extend(generate(lm.model, lm.tokenizer, chunk, settings, seed=seed + i + 1, spec=lm.spec))

    sec = timed(lambda: run(-1), run, repeats)
    lengths = [len(x) for x in lm.tokenizer(done[b:], add_special_tokens=False)["input_ids"]]
    widths = [max(map(len, prompt_ids(lm.tokenizer, prompts[(i + 1) * b:(i + 2) * b], lm.spec,
                                      settings.max_prompt_tokens))) for i in range(repeats)]
    return {"tok_s": b * settings.max_new_tokens / sec, "batch_s": sec, "mean_new_tokens": float(statistics.mean(lengths)),
            "prompt_width": float(statistics.mean(widths))}


def _worker_generation(folder: str, prompts: list[str], settings, repeats: int, seed: int) -> list[float]:
    """Worker side of :func:`bench_generation_workers`: seconds per timed batch (after a warm-up)."""
    from fairl_lib.llm.models import generate, load_lm

    lm = load_lm(folder)
    b, secs = settings.batch_size, []
    for i in range(-1, repeats):
        t = time.perf_counter()
        generate(lm.model, lm.tokenizer, prompts[(i + 1) * b:(i + 2) * b], settings, seed=seed + i + 1, spec=lm.spec)
        if i >= 0:
            secs.append(time.perf_counter() - t)
    return secs


def bench_generation_workers(lm, prompts: list[str], settings, repeats: int, seed: int, workers: int) -> dict[str, float]:
    """Aggregate new tokens/s of ``workers`` one-thread processes generating side by side
    (``fairl_lib.llm.fast.parallel.run_jobs``, as the pairs stage does): each loads the model, warms up on one
    batch, then times ``repeats`` batches of its own prompts; the sum of their median rates."""
    from fairl_lib.llm.fast.parallel import run_jobs

    b = settings.batch_size
    per = b * (repeats + 1)
    if len(prompts) < per * workers:
        raise SystemExit(f"need {per * workers} prompts for {workers} workers; have {len(prompts)}")
    jobs = [(str(lm.path), prompts[w * per:(w + 1) * per], settings, repeats, seed + 1000 * w) for w in range(workers)]
    secs = run_jobs(_worker_generation, jobs, workers)
    return {"tok_s": sum(b * settings.max_new_tokens / statistics.median(s) for s in secs),
            "batch_s": statistics.median([x for s in secs for x in s])}


def rlhf_step_times(results: Path) -> dict[str, Any]:
    """Median ``step_time_s`` over every expert RLHF history under ``results`` (finished or partial)."""
    from fairl_lib.llm.rlhf import load_history

    runs = sorted(results.glob("stages/expert/*/rlhf/history.jsonl"))
    times: list[float] = []
    for path in runs:
        hist = load_history(path.parent)
        if "step_time_s" in hist:
            times += [float(x) for x in hist["step_time_s"] if math.isfinite(float(x))]
    return {"rlhf_step_s_median": statistics.median(times) if times else None, "rlhf_steps": len(times),
            "rlhf_runs": [str(p.parent.parent.relative_to(results)) for p in runs]}


def pipeline_peak_rss(results: Path) -> dict[str, Any]:
    """Largest per-notebook ``peak_rss_mb`` recorded in ``results/run.json`` (``None``: none recorded)."""
    path = results / "run.json"
    books = json.loads(path.read_text()).get("notebooks", {}) if path.exists() else {}
    peaks = {k: v["peak_rss_mb"] for k, v in books.items() if isinstance(v.get("peak_rss_mb"), (int, float))}
    if not peaks:
        return {"pipeline_peak_rss_mb": None}
    worst = max(peaks, key=peaks.get)
    return {"pipeline_peak_rss_mb": peaks[worst], "pipeline_peak_rss_notebook": worst,
            "pipeline_peak_rss_under_12gb": peaks[worst] < MEMORY_LIMIT_MB}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the measurements, print them, print the JSON line last and return it as a dict."""
    args = parse_args(argv)
    os.environ["FAIRL_THREADS"] = str(args.threads)  # models._threads() would otherwise apply OMP_NUM_THREADS
    import torch

    from fairl_lib.llm import data
    from fairl_lib.config import make_config
    from fairl_lib.llm.models import Embedder, load_lm
    from fairl_lib.llm.scorers import get_scorer

    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    cfg = make_config(args.profile, seed=args.seed)
    gen = cfg.gen
    if args.max_new_tokens is not None:
        gen = dataclasses.replace(gen, max_new_tokens=args.max_new_tokens)
    if args.max_prompt_tokens is not None:
        gen = dataclasses.replace(gen, max_prompt_tokens=args.max_prompt_tokens)
    batch_sizes = args.batch_sizes or sorted({16, cfg.gen.batch_size})
    out: dict[str, Any] = {"profile": args.profile, "threads": args.threads, "repeats": args.repeats,
                           "max_new_tokens": gen.max_new_tokens, "max_prompt_tokens": gen.max_prompt_tokens,
                           "torch": torch.__version__}

    train, _ = data.rtp_prompts(cfg.data.ppo_prompt_toxicity, cfg.data.heldout_prompts, cfg.seed)
    prompts = train["prompt"].tolist()
    rtp = data.load_rtp()
    texts = (rtp["prompt"] + rtp["continuation"]).tolist()
    t = time.perf_counter()
    lm = load_lm(cfg.models.base_lm)
    print(f"[load] {lm.meta['name']} ({lm.meta['variant'] or lm.source}) in {time.perf_counter() - t:.1f}s; "
          f"{len(prompts)} prompts, {len(texts)} texts", flush=True)
    for b in batch_sizes:
        r = bench_generation(lm, prompts, dataclasses.replace(gen, batch_size=b), args.repeats, args.seed)
        out.update({f"gen_tok_s_b{b}": r["tok_s"], f"gen_batch_s_b{b}": r["batch_s"],
                    f"gen_mean_new_tokens_b{b}": r["mean_new_tokens"], f"gen_prompt_width_b{b}": r["prompt_width"]})
        print(f"[gen] batch {b:3d}: {r['tok_s']:7.1f} new tokens/s ({r['batch_s']:.2f} s per batch, "
              f"prompts padded to {r['prompt_width']:.1f} tokens, "
              f"{r['mean_new_tokens']:.1f} of {gen.max_new_tokens} tokens per completion re-tokenized)", flush=True)
    for b in batch_sizes if args.workers > 1 else ():
        r = bench_generation_workers(lm, prompts, dataclasses.replace(gen, batch_size=b), args.repeats, args.seed,
                                     args.workers)
        out.update({f"gen_tok_s_b{b}_workers{args.workers}": r["tok_s"]})
        print(f"[gen] batch {b:3d}, {args.workers} one-thread workers: {r['tok_s']:7.1f} new tokens/s in total "
              f"({r['batch_s']:.2f} s per batch)", flush=True)
    del lm

    n = min(args.texts, len(texts))
    for name in ("bilstm", "profanity"):  # the cpu profile's ground truth and judge
        scorer = get_scorer(name)
        sec = timed(lambda s=scorer: s(texts[:32]), lambda i, s=scorer: s(texts[:n]), args.repeats)
        out[f"{name}_texts_s"] = n / sec
        print(f"[score] {name}: {n / sec:8.1f} texts/s ({n} texts in {sec:.2f} s)", flush=True)
    out["scorer_texts"] = n

    encoder = Embedder("minilm", cache=False)  # no SQLite lookups or writes: the raw encoder
    model, m = encoder.model, min(args.sentences, len(texts))

    def encode(sentences: list[str]) -> Any:
        return model.encode(sentences, batch_size=encoder.batch_size, convert_to_numpy=True, show_progress_bar=False)

    sec = timed(lambda: encode(texts[-encoder.batch_size:]), lambda i: encode(texts[:m]), args.repeats)
    out.update(minilm_sent_s=m / sec, minilm_sentences=m)
    print(f"[embed] minilm: {m / sec:8.1f} sentences/s ({m} in {sec:.2f} s, cache bypassed)", flush=True)

    out.update(rlhf_step_s_median=None, rlhf_steps=0, pipeline_peak_rss_mb=None)  # null without --results
    if args.results is not None:
        out.update(rlhf_step_times(args.results))
        out.update(pipeline_peak_rss(args.results))
        print(f"[rlhf] {out['rlhf_steps']} steps in {len(out['rlhf_runs'])} expert run(s): median "
              f"{out['rlhf_step_s_median']} s/step", flush=True)
        print(f"[memory] pipeline peak RSS {out['pipeline_peak_rss_mb']} MB (run.json)", flush=True)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(f"[memory] this benchmark's peak RSS {out['peak_rss_mb']:.0f} MB", flush=True)
    out = {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}
    out["loadavg_start"] = [round(x, 2) for x in load0]
    out["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
