"""Explanation sets of responses by the examples of a training set: files in, one answer per response out.

:mod:`fairl_lib.analysis.audit` is the geometry (a target vector, a pool matrix). This module decides
what the vectors are, for a training file anyone can write and for the pipeline's own expert alike, and
reports each response's explanation. ``python -m fairl_lib audit explain`` runs it on a training file
(``--train``) or on the expert's RLOO rollouts (:func:`fairl_lib.stages.audit.expert_training_set`):
both build a :class:`TrainingSet` and call :func:`explain_responses`.

**Training examples and their vectors.** A training file holds JSON lines of one kind
(:func:`read_training`):

- *preference pairs* ``{"prompt", "chosen", "rejected"}``, a reward model's training data: the example
  is its feature difference ``Delta phi = phi(chosen) - phi(rejected)``, as in Liu et al. (Explainable
  RLHF), who explain with the reward model's pairs. A Bradley-Terry reward ``theta^T phi`` is trained to
  make every pair's margin ``theta^T Delta phi`` large; a response with ``phi = sum_i w_i Delta phi_i``
  (convex ``w``) gets reward ``sum_i w_i theta^T Delta phi_i``, a weighted mean of those margins, so
  these pairs are what made the reward, and with it the policy, favour that response.
- *scored completions* ``{"prompt", "completion", "reward"}``, e.g. the rollouts of a policy-gradient
  run: the example is ``phi(completion)``, the text training saw and rewarded. ``min_reward`` keeps only
  completions rewarded above it: one that training pushed down cannot be a cause of the policy writing
  something like it (the expert's own pool keeps the rollouts with a positive RLOO advantage, for the
  same reason).

A response (``{"response", "prompt"?}``, :func:`read_responses`) is ``phi(response)``. ``prompt`` is
optional everywhere unless ``features="prompt_completion"``, which embeds prompt + text instead of the
text alone (the project's rewards read the completion only, hence ``"completion"`` by default).

A pair's difference points where its two answers differ (tone, toxicity), a response's ``phi`` where
its whole meaning lies; with MiniLM the two are nearly orthogonal (cosines within +-0.3 on a handful of
sentences), so the hull of differences seldom comes near a response: relative residuals stay high
(0.8-0.9 there), and the explanation is then the pairs that come closest rather than a decomposition.
The residual is always reported, and ``within_tol`` says which case it is.

**Features.** ``phi`` is a sentence embedder (:class:`fairl_lib.llm.models.Embedder`), passed in as a
function so that this module loads no model. The embedder caches every text's vector on disk, in a
folder per embedder name (``cache_dir('embeddings', name)``) keyed by the sha256 of the text, each
write one SQLite transaction: a second call on the same files embeds nothing.

**User mistakes** (a missing or empty file, a line that is not a JSON object, a missing or mistyped
field, two kinds in one file) raise :class:`DataError`, one line naming the file and line.
"""
from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fairl_lib.analysis import audit as geo

FEATURES = ("completion", "prompt_completion")
KINDS = {"pairs": ("chosen", "rejected"), "scored": ("completion", "reward")}
REPRESENTATION = {"pairs": "phi(chosen) - phi(rejected)", "scored": "phi(completion)"}
TEXT_SUFFIX = ".txt"  # a responses file with this suffix is plain text, one response per line

Embed = Callable[[Sequence[str]], np.ndarray]


class DataError(ValueError):
    """A training or responses file the user gave is not as documented (one line: file, line, what)."""


@dataclass(frozen=True)
class TrainingSet:
    """The training examples responses are explained by.

    Attributes:
        kind: ``"pairs"`` (each example is ``phi(chosen) - phi(rejected)``) or ``"scored"``
            (``phi(completion)``).
        examples: each example's fields, shown with it in the output (``chosen``/``rejected`` or
            ``completion``/``reward``, ``prompt`` when given, anything else the source records).
        index: each example's index in its source (its position among a file's examples, from 0; a
            rollout's row), the number a user looks it up by.
        lines: each example's line in the file (from 1), or None when it did not come from a file.
        source: where the examples came from (a path, or the expert stage's folder).
    """

    kind: str
    examples: list[dict[str, Any]]
    index: list[int]
    lines: list[int] | None
    source: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r}; valid: {', '.join(KINDS)}")

    def __len__(self) -> int:
        return len(self.examples)


# --------------------------------------------------------------------------- reading files


def _json_lines(path: Path, what: str) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` of every non-blank line of ``path``; :class:`DataError` on a missing
    file, a line that is not a JSON object, or a file without any."""
    if not path.is_file():
        raise DataError(f"no file {path}: pass {what}")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{n}: not valid JSON ({err.msg} at column {err.colno}); "
                            f"each line must be one JSON object") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{n}: a JSON {type(obj).__name__}, not an object; each line must be one "
                            "JSON object")
        rows.append((n, obj))
    if not rows:
        raise DataError(f"{path} is empty: pass {what}")
    return rows


def _string(path: Path, n: int, obj: dict[str, Any], key: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise DataError(f"{path}:{n}: {key!r} must be a string, not {type(value).__name__}")
    return value


def _kind_of(obj: dict[str, Any]) -> str | None:
    return next((k for k, fields in KINDS.items() if all(f in obj for f in fields)), None)


def read_training(path: str | Path, min_reward: float | None = None) -> TrainingSet:
    """A training file (module docstring): JSON lines, every line a preference pair or every line a
    scored completion; blank lines are skipped. ``min_reward`` (scored completions only) keeps the
    examples rewarded above it; their ``index`` and ``lines`` still count every example of the file.

    Raises:
        DataError: the file is missing or empty, a line is not a JSON object, lacks the fields of its
            kind or has them mistyped, the two kinds are mixed, ``min_reward`` is given for pairs or
            leaves no example.
    """
    path = Path(path)
    what = ('JSON lines of preference pairs {"prompt", "chosen", "rejected"} or scored completions '
            '{"prompt", "completion", "reward"}')
    rows = _json_lines(path, what)
    first_line, first = rows[0]
    kind = _kind_of(first)
    if min_reward is not None and kind == "pairs":
        raise DataError(f"--min-reward applies to scored completions; {path} holds preference pairs")
    examples, index, lines = [], [], []
    for i, (n, obj) in enumerate(rows):
        k = _kind_of(obj)
        if k is None:
            keys = ", ".join(map(repr, obj)) or "none"
            raise DataError(f"{path}:{n}: a training line needs 'chosen' and 'rejected' (a preference pair) or "
                            f"'completion' and 'reward' (a scored completion); its keys: {keys}")
        if k != kind:
            raise DataError(f"{path}:{n}: a {'preference pair' if k == 'pairs' else 'scored completion'} in a file "
                            f"of {'preference pairs' if kind == 'pairs' else 'scored completions'} (line "
                            f"{first_line}); use one kind per file")
        if kind == "pairs":
            ex: dict[str, Any] = {"chosen": _string(path, n, obj, "chosen"), "rejected": _string(path, n, obj, "rejected")}
        else:
            reward = obj["reward"]
            if isinstance(reward, bool) or not isinstance(reward, (int, float)) or not np.isfinite(reward):
                raise DataError(f"{path}:{n}: 'reward' must be a finite number, not {json.dumps(reward)}")
            ex = {"completion": _string(path, n, obj, "completion"), "reward": float(reward)}
            if min_reward is not None and not ex["reward"] > min_reward:
                continue
        if "prompt" in obj:
            ex = {"prompt": _string(path, n, obj, "prompt"), **ex}
        examples.append(ex)
        index.append(i)
        lines.append(n)
    if not examples:
        raise DataError(f"no example of {path} has a reward above {min_reward:g}: lower --min-reward")
    return TrainingSet(kind, examples, index, lines, str(path))


def read_responses(path: str | Path) -> list[dict[str, Any]]:
    """The responses to explain: ``[{"response", "prompt"?, "line"}]``. A file ending in ``.txt`` is plain
    text, one response per line; any other is JSON lines ``{"response", "prompt"?}``. Blank lines are
    skipped (an empty response has nothing to explain).

    Raises:
        DataError: the file is missing or empty, or a JSON line is not an object with a string ``response``
            (and, if present, a string ``prompt``).
    """
    path = Path(path)
    what = ('JSON lines {"response": ..., "prompt": ...} (prompt optional), or a .txt file with one '
            'response per line')
    if path.suffix == TEXT_SUFFIX:
        if not path.is_file():
            raise DataError(f"no file {path}: pass {what}")
        out = [{"response": line, "line": n} for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(),
                                                                       start=1) if line.strip()]
        if not out:
            raise DataError(f"{path} is empty: pass {what}")
        return out
    out = []
    for n, obj in _json_lines(path, what):
        if "response" not in obj:
            keys = ", ".join(map(repr, obj)) or "none"
            raise DataError(f"{path}:{n}: a response line needs 'response' (and optionally 'prompt'); its keys: {keys}")
        row = {"response": _string(path, n, obj, "response"), "line": n}
        if "prompt" in obj:
            row = {"prompt": _string(path, n, obj, "prompt"), **row}
        out.append(row)
    return out


# --------------------------------------------------------------------------- features


def feature_texts(prompts: Sequence[str], texts: Sequence[str], features: str) -> list[str]:
    """The texts the embedder reads: the texts themselves (``"completion"``) or prompt + text
    (``"prompt_completion"``, concatenated as the policy saw them)."""
    if features not in FEATURES:
        raise ValueError(f"features={features!r}; valid: {', '.join(FEATURES)}")
    if features == "completion":
        return [str(t) for t in texts]
    return [f"{p}{t}" for p, t in zip(prompts, texts)]


def _prompts(rows: Sequence[dict[str, Any]], features: str, where: Callable[[int], str]) -> list[str]:
    if features == "prompt_completion":
        for j, r in enumerate(rows):
            if "prompt" not in r:
                raise DataError(f"{where(j)}: --features prompt_completion needs a 'prompt' on every line")
    return [r.get("prompt", "") for r in rows]


def _training_prompts(ts: TrainingSet, features: str) -> list[str]:
    return _prompts(ts.examples, features,
                    lambda j: f"{ts.source}:{ts.lines[j]}" if ts.lines else f"{ts.source} example {ts.index[j]}")


def _response_prompts(responses: Sequence[dict[str, Any]], features: str, source: str) -> list[str]:
    return _prompts(responses, features, lambda j: f"{source}:{responses[j].get('line', j + 1)}")


def training_features(ts: TrainingSet, embed: Embed, features: str = "completion") -> np.ndarray:
    """``(len(ts), d)`` float64: ``phi(chosen) - phi(rejected)`` per pair, ``phi(completion)`` per scored
    completion (module docstring). Chosen and rejected texts go to ``embed`` in one call."""
    prompts = _training_prompts(ts, features)
    if ts.kind == "pairs":
        texts = (feature_texts(prompts, [e["chosen"] for e in ts.examples], features)
                 + feature_texts(prompts, [e["rejected"] for e in ts.examples], features))
        v = np.asarray(embed(texts), dtype=np.float64)
        return v[: len(ts)] - v[len(ts):]
    return np.asarray(embed(feature_texts(prompts, [e["completion"] for e in ts.examples], features)),
                      dtype=np.float64)


def response_features(responses: Sequence[dict[str, Any]], embed: Embed, features: str = "completion",
                      source: str = "responses") -> np.ndarray:
    """``(len(responses), d)`` float64: ``phi(response)`` (or of prompt + response)."""
    prompts = _response_prompts(responses, features, source)
    return np.asarray(embed(feature_texts(prompts, [r["response"] for r in responses], features)), dtype=np.float64)


# --------------------------------------------------------------------------- explaining


def explanation_record(response: dict[str, Any], e: geo.Explanation, ts: TrainingSet) -> dict[str, Any]:
    """One response's answer as plain JSON types: the response, its explaining examples (``index``, ``line``
    when from a file, convex ``weight``, the example's fields; heaviest first), the residual (absolute and
    relative to the nearest example), ``k`` (nearest examples tried) and whether ``tol`` was met."""
    order = np.argsort(-e.weights, kind="stable")
    members = []
    for j in order:
        m = int(e.members[j])
        row: dict[str, Any] = {"index": ts.index[m]}
        if ts.lines is not None:
            row["line"] = ts.lines[m]
        members.append({**row, "weight": float(e.weights[j]), **ts.examples[m]})
    return {**response, "within_tol": e.within_tol, "relative_residual": e.relative_residual, "residual": e.residual,
            "nearest": e.nearest, "size": e.size, "k": e.k, "members": members}


def explain_responses(ts: TrainingSet, responses: Sequence[dict[str, Any]], embed: Embed, tol: float, max_size: int,
                      features: str = "completion", source: str = "responses") -> list[dict[str, Any]]:
    """Each response's explanation set among ``ts`` (:func:`fairl_lib.analysis.audit.explain`, relative
    ``tol``), as :func:`explanation_record` rows in the order of ``responses``."""
    if tol < 0 or max_size < 1:
        raise DataError(f"--tol must be >= 0 and --max-size >= 1 (got {tol:g} and {max_size})")
    if not len(ts):
        raise DataError(f"{ts.source} holds no training examples to explain with")
    _training_prompts(ts, features)  # every mistake is reported before anything is embedded
    _response_prompts(responses, features, source)
    pool = training_features(ts, embed, features)
    targets = response_features(responses, embed, features, source)
    return [explanation_record(dict(r), geo.explain(x, pool, tol, max_size, relative=True), ts)
            for r, x in zip(responses, targets)]


def report(ts: TrainingSet, records: list[dict[str, Any]], embedder: str, features: str, tol: float,
           max_size: int) -> dict[str, Any]:
    """The whole answer as one JSON-able document: what was explained with, how, and every response's record."""
    return {"training": {"source": ts.source, "kind": ts.kind, "representation": REPRESENTATION[ts.kind],
                         "n_examples": len(ts)},
            "embedder": embedder, "features": features, "tol": tol, "tol_is_relative": True, "max_size": max_size,
            "responses": records}


def _short(text: str, width: int) -> str:
    return json.dumps(textwrap.shorten(" ".join(str(text).split()), width, placeholder=" ..."), ensure_ascii=False)


def render_text(doc: dict[str, Any], width: int = 90) -> str:
    """:func:`report` for reading: per response its verdict and members, heaviest first, texts shortened."""
    t = doc["training"]
    kind = "preference pairs" if t["kind"] == "pairs" else "scored completions"
    out = [(f"training: {t['n_examples']} {kind} from {t['source']}, each as {t['representation']} "
            f"({doc['embedder']}, {doc['features']})"),
           f"tolerance: relative residual <= {doc['tol']:g}, at most {doc['max_size']} nearest examples", ""]
    for j, r in enumerate(doc["responses"], start=1):
        where = f" (line {r['line']})" if "line" in r else ""
        out.append(f"response {j}{where}: {_short(r['response'], width)}")
        if "prompt" in r:
            out.append(f"  prompt: {_short(r['prompt'], width)}")
        verdict = "within tolerance" if r["within_tol"] else "NOT within tolerance"
        out.append(f"  {verdict}: relative residual {r['relative_residual']:.3f} (absolute {r['residual']:.4f}, "
                   f"nearest example at {r['nearest']:.4f}); {r['size']} example(s) of the {r['k']} nearest")
        for m in r["members"]:
            line = f", line {m['line']}" if "line" in m else ""
            fields = [f"{k} {m[k]:.4g}" for k in ("reward", "advantage", "step") if k in m]
            out.append(f"    weight {m['weight']:.3f}  example {m['index']}{line}" + (f" ({', '.join(fields)})" if fields
                                                                                      else ""))
            for key in ("prompt", "chosen", "rejected", "completion"):
                if key in m:
                    out.append(f"      {key}: {_short(m[key], width)}")
        out.append("")
    return "\n".join(out)
