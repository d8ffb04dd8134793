"""Sampling many completions of a loaded LM: sorted by prompt, in resumable chunks, in worker processes.

Shared by the stages that sample the base model or the expert at scale: prompt screening
(:mod:`fairl_lib.stages.screen`), the pairs (:mod:`fairl_lib.stages.pairs`), the held-out
evaluations (:mod:`fairl_lib.stages.expert`, :mod:`fairl_lib.stages.rerlhf`) and the audit.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from fairl_lib.artifacts import atomic_write_text
from fairl_lib.llm.fast.parallel import run_jobs
from fairl_lib.llm.models import generate, get_spec, load_lm
from fairl_lib.llm.progress import Progress

GEN_CHUNK = 512  # completions per resumable generation chunk


def base_name(cfg, base_lm: str | None = None) -> str:
    return base_lm or cfg.models.base_lm


def model_source(cfg, base_lm: str | None = None) -> str:
    """Where ``base_lm`` comes from in this profile: ``"gguf"`` when the profile lists the model's
    offline GGUF asset (cpu, smoke), ``"hub"`` when it lists the hub checkpoint (paper: the base
    SmolLM2, not the Instruct GGUF), else ``"auto"`` (``models.load_lm`` decides)."""

    spec = get_spec(base_name(cfg, base_lm))
    if spec.gguf_asset and spec.gguf_asset in cfg.assets:
        return "gguf"
    if spec.hub_asset in cfg.assets:
        return "hub"
    return "auto"


def generate_sorted(lm, prompts: list[str], settings, seed: int) -> list[str]:
    """``models.generate`` with prompts grouped by length (less padding), returned in input order.

    The order is a deterministic function of the prompts, so results stay reproducible.
    """

    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), prompts[i], i))
    out = generate(lm.model, lm.tokenizer, [prompts[i] for i in order], settings, seed=seed, spec=lm.spec)
    result = [""] * len(prompts)
    for j, i in enumerate(order):
        result[i] = out[j]
    return result


def chunked_generate(lm, prompts: list[str], settings, seed: int, work: Path, tag: str,
                     what: str = "pairs") -> list[str]:
    """Generate in chunks of :data:`GEN_CHUNK`, each saved in ``work`` (a killed run resumes).

    Chunk ``c`` is sampled with seed ``seed * 100003 + c``. With ``settings.workers`` > 1 the
    missing chunks are shared by that many one-thread processes (:func:`fairl_lib.llm.fast.parallel.run_jobs`),
    each loading the model from ``lm.path``. Prints ``[<what> TAG] chunk i/n`` with completions done,
    rate and ETA as each chunk finishes (``what`` names the stage) (:class:`fairl_lib.llm.progress.Progress`).
    """

    chunks = [(work / f"gen_{tag}_{c:04d}.json", prompts[start:start + GEN_CHUNK], seed * 100003 + c)
              for c, start in enumerate(range(0, len(prompts), GEN_CHUNK))]
    todo = [(path, chunk, s) for path, chunk, s in chunks
            if not (path.exists() and len(json.loads(path.read_text())) == len(chunk))]
    count = len(prompts) - sum(len(chunk) for _, chunk, _ in todo)
    progress = Progress(len(chunks), f"{what} {tag}", every_seconds=0, unit="chunk",
                        initial=len(chunks) - len(todo))
    if todo:
        progress.update(progress.done, completions=f"{count}/{len(prompts)}",
                        workers=min(settings.workers, len(todo)))

    def report(i: int, _: Any) -> None:
        nonlocal count
        count += len(todo[i][1])
        progress.update(completions=f"{count}/{len(prompts)}")

    if settings.workers > 1 and len(todo) > 1:
        run_jobs(_generate_chunk, [(str(lm.path), chunk, settings, s, path) for path, chunk, s in todo],
                 settings.workers, report)
    else:
        for i, (path, chunk, s) in enumerate(todo):
            _generate_chunk(lm, chunk, settings, s, path)
            report(i, None)
    return [c for path, _, _ in chunks for c in json.loads(path.read_text())]


def _generate_chunk(lm, prompts: list[str], settings, seed: int, path: Path) -> None:
    """One resumable chunk: ``lm`` is a loaded model, or its folder (in a worker process)."""

    if isinstance(lm, str):
        lm = _worker_lm(lm)
    atomic_write_text(path, json.dumps(generate_sorted(lm, prompts, settings, seed)))


@functools.lru_cache(maxsize=1)
def _worker_lm(folder: str):

    return load_lm(folder)
