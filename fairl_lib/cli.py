"""Command line: ``python -m fairl_lib <group> <command> ...``.

Adding a command is one decorated function::

    @command("score reward", "Score texts with a learned reward.",
             arg("path", help="reward model folder"))
    def score_reward(ns: argparse.Namespace) -> int:
        ...
        return 0

The words of the first argument are the sub-command path; groups (``score``, ``assets``) are
created on first use. Results go to stdout; progress and errors to stderr. A user's mistake (a
folder that does not exist, an unknown profile, scorer or asset) prints one line saying what to do
and exits 2, without a traceback (:class:`UsageError` and the library's own error types).

The scoring commands import :mod:`fairl_lib.llm.models` and :mod:`fairl_lib.llm.scorers` (torch,
transformers, sentence-transformers: seconds to import) inside their functions, so that ``--help``
and the ``assets`` commands answer at once; everything else is imported here.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from fairl_lib.analysis.provenance import check, status_lines, write_notices
from fairl_lib.config import ConfigError, make_config
from fairl_lib.irl import WEIGHT_FILE, load_reward
from fairl_lib.llm.assets import AssetError, describe_all, fetch_many, profile_assets
from fairl_lib.paths import repo_root


class UsageError(Exception):
    """A mistake in what the user asked for; the message says what to do instead."""

Handler = Callable[[argparse.Namespace], int]


@dataclass
class Command:
    """A registered sub-command: its words, help line, argparse arguments and handler."""

    path: tuple[str, ...]
    help: str
    args: tuple[tuple[tuple[str, ...], dict[str, Any]], ...]
    func: Handler = field(repr=False)


COMMANDS: list[Command] = []
GROUP_HELP: dict[str, str] = {
    "score": "score texts (toxicity scorers, learned rewards)",
    "assets": "models and data: list, fetch and verify",
    "audit": "notebook 10's audit of the RLHF expert: explanation sets of responses",
}


def arg(*flags: str, **kwargs: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    """One ``parser.add_argument(*flags, **kwargs)`` call, recorded for :func:`command`."""
    return flags, kwargs


def command(path: str, help: str, *args: tuple[tuple[str, ...], dict[str, Any]]) -> Callable[[Handler], Handler]:
    """Register ``func(ns) -> exit code`` as the sub-command ``path`` (e.g. ``"score toxicity"``)."""

    def register(func: Handler) -> Handler:
        COMMANDS.append(Command(tuple(path.split()), help, args, func))
        return func

    return register


def profile_arg() -> tuple[tuple[str, ...], dict[str, Any]]:
    """``--profile`` (default ``$FAIRL_PROFILE`` or ``cpu``)."""
    return arg("--profile", default=os.environ.get("FAIRL_PROFILE", "cpu"),
               help="profile: smoke, cpu or paper (default: $FAIRL_PROFILE or cpu)")


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of every registered command."""
    parser = argparse.ArgumentParser(prog="python -m fairl_lib", description=__doc__.split("\n")[0])
    subs: dict[tuple[str, ...], Any] = {(): parser.add_subparsers(dest="cmd0", metavar="COMMAND", required=True)}
    for cmd in COMMANDS:
        for depth in range(1, len(cmd.path)):
            prefix = cmd.path[:depth]
            if prefix not in subs:
                group = subs[prefix[:-1]].add_parser(prefix[-1], help=GROUP_HELP.get(" ".join(prefix), ""))
                subs[prefix] = group.add_subparsers(dest=f"cmd{depth}", metavar="COMMAND", required=True)
        p = subs[cmd.path[:-1]].add_parser(cmd.path[-1], help=cmd.help, description=cmd.help)
        for flags, kwargs in cmd.args:
            p.add_argument(*flags, **kwargs)
        p.set_defaults(_func=cmd.func)
    return parser


def user_errors() -> tuple[type[Exception], ...]:
    """The exceptions that mean "the request was wrong", not "the program is broken"."""
    from fairl_lib.llm.scorers import ScorerError  # deferred: see the module docstring

    return (UsageError, AssetError, ScorerError, ConfigError)


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the command; a user error prints one line (``error: ...``) and exits 2."""
    ns = build_parser().parse_args(argv)
    try:
        return int(ns._func(ns) or 0)
    except user_errors() as err:
        msg = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
        print(f"error: {msg.splitlines()[0] if msg else type(err).__name__}", file=sys.stderr)
        return 2


# =========================================================================== score


def _batches(stream: TextIO, size: int) -> Iterator[list[str]]:
    """Lines of ``stream`` (trailing newline removed, nothing else) in lists of ``size``."""
    batch: list[str] = []
    for line in stream:
        batch.append(line.rstrip("\r\n") if line.endswith("\n") else line)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@command("score toxicity", "Read texts (one per line) on stdin; write one JSON object per line: "
         '{"text", "scores": {label: p}, "toxic": P(toxic) > threshold}.',
         arg("--scorer", default=None, help="bilstm, profanity, roberta or detoxify "
                                            "(default: the profile's ground truth; bilstm for smoke/cpu)"),
         profile_arg(),
         arg("--threshold", type=float, default=0.5, help="toxic when P(toxic) > this (default 0.5)"),
         arg("--batch-size", type=int, default=64, help="texts scored together (default 64)"))
def score_toxicity(ns: argparse.Namespace) -> int:
    from fairl_lib.llm.scorers import get_scorer, ground_truth_scorer_name  # deferred: heavy

    scorer = get_scorer(ns.scorer or ground_truth_scorer_name(ns.profile))
    out = sys.stdout
    for texts in _batches(sys.stdin, max(1, ns.batch_size)):
        scores = scorer(texts)
        for k, text in enumerate(texts):
            row = {lab: float(v[k]) for lab, v in scores.items()}
            out.write(json.dumps({"text": text, "scores": row, "toxic": row["toxic"] > ns.threshold},
                                 ensure_ascii=False) + "\n")
        out.flush()
    return 0


@command("score reward", "Score texts (one per line on stdin) with a learned reward; write one JSON object "
         'per line: {"text", "reward", "reward_base", "reward_failure"}.',
         arg("path", help="reward folder (reward.safetensors + reward.json, e.g. results/cpu/rewards/me_fa_margin/seed0)"),
         arg("--embedder", default=None, help="embedder name (default: the one recorded with the reward)"),
         arg("--batch-size", type=int, default=64, help="texts embedded together (default 64)"))
def score_reward(ns: argparse.Namespace) -> int:
    from fairl_lib.llm.models import get_embedder  # deferred: heavy
    from fairl_lib.stages.irl_grid import reward_embedder

    folder = Path(ns.path)
    if not (folder / WEIGHT_FILE).is_file():
        raise UsageError(f"no reward in {folder} (no {WEIGHT_FILE}): pass a reward folder such as "
                         "results/cpu/rewards/me_fa_margin/seed0, written by notebook 04")
    reward = load_reward(folder)
    embedder = get_embedder(ns.embedder or reward_embedder(reward, folder))
    out = sys.stdout
    for texts in _batches(sys.stdin, max(1, ns.batch_size)):
        r_d, r_f = reward.components(embedder.embed(texts))
        for k, text in enumerate(texts):
            out.write(json.dumps({"text": text, "reward": float(r_d[k] + r_f[k]), "reward_base": float(r_d[k]),
                                  "reward_failure": float(r_f[k])}, ensure_ascii=False) + "\n")
        out.flush()
    return 0


# =========================================================================== audit


def _audit_pairs(ns: argparse.Namespace) -> tuple[list[str], list[str]]:
    """``(prompts, responses)`` from ``--prompt``/``--response`` or ``--file`` (JSON lines)."""
    if ns.file:
        path = Path(ns.file)
        if not path.is_file():
            raise UsageError(f"no file {path}: pass JSON lines with 'prompt' and 'response' (or --prompt and --response)")
        prompts, responses = [], []
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                prompts.append(str(row["prompt"]))
                responses.append(str(row["response"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                raise UsageError(f"{path}:{n}: not a JSON object with 'prompt' and 'response'") from None
        if not prompts:
            raise UsageError(f"{path} holds no JSON lines with 'prompt' and 'response'")
        return prompts, responses
    if ns.prompt is None or ns.response is None:
        raise UsageError("give --prompt TEXT and --response TEXT, or --file with JSON lines of prompt and response")
    return [ns.prompt], [ns.response]


@command("audit explain", "Explain responses by the expert's training rollouts (notebook 10): print one JSON "
         'object per response: {"prompt", "response", "size", "k", "relative_residual", "within_tol", "members": '
         '[{"weight", "step", "reward", "advantage", "prompt", "completion"}, ...]}. Needs a finished expert '
         "stage of the profile (notebook 01); nothing is trained.",
         profile_arg(),
         arg("--prompt", default=None, help="the prompt the response answers"),
         arg("--response", default=None, help="the response to explain"),
         arg("--file", default=None, help="JSON lines, each {\"prompt\": ..., \"response\": ...}, instead"),
         arg("--seed", type=int, default=0, help="seed of the expert (default 0)"),
         arg("--overrides", default="", help="profile overrides, e.g. 'audit.tol=0.6; audit.max_size=32'"))
def audit_explain(ns: argparse.Namespace) -> int:
    from fairl_lib.stages.audit import explain_texts  # deferred: heavy
    from fairl_lib.stages.expert import NoRollouts

    prompts, responses = _audit_pairs(ns)
    cfg = make_config(ns.profile, seed=ns.seed, overrides=ns.overrides)
    try:
        rows = explain_texts(cfg, prompts, responses)
    except NoRollouts as err:
        raise UsageError(str(err)) from None
    for row in rows:
        sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
    return 0


# =========================================================================== assets


@command("assets fetch", "Fetch and verify (sha256) every asset a profile needs, or the named ones.",
         arg("names", nargs="*", help="asset names (default: the profile's list)"),
         profile_arg(),
         arg("--force", action="store_true", help="re-extract / re-download even if cached"))
def assets_fetch(ns: argparse.Namespace) -> int:
    names = ns.names or profile_assets(ns.profile)
    print(f"fetching {len(names)} asset(s): {', '.join(names)}", file=sys.stderr)
    fetch_many(names, force=ns.force, log=lambda msg: print(msg, file=sys.stderr))
    return 0


@command("assets list", "List every registered asset with its sources (tab separated).",
         arg("--profile", default=None, help="only the assets of this profile"))
def assets_list(ns: argparse.Namespace) -> int:
    wanted = set(profile_assets(ns.profile)) if ns.profile else None
    for row in describe_all():
        if wanted is None or row["name"] in wanted:
            print("\t".join((row["name"], row["kind"], row["sources"], row["description"])))
    return 0


# =========================================================================== provenance


@command("provenance", "Which commit made the committed results (REPORT.md, figures/, docs/site/), and which "
         "inputs (fairl_lib/, notebooks/, requirements.txt) have changed since: the notice, then every changed file.",
         arg("--write", action="store_true", help="also rewrite the notice in README.md and docs/site/ (its contents "
                                                  "and report pages)"),
         arg("--against", default=None, metavar="REV",
             help="compare with a revision (e.g. HEAD) instead of the working tree"))
def provenance(ns: argparse.Namespace) -> int:
    root = repo_root()
    status = check(root, ns.against)
    print("\n".join(status_lines(status)))
    if ns.write:
        try:
            written = write_notices(root, status)
        except ValueError as err:
            raise UsageError(str(err)) from None
        for path in written:
            print(f"rewrote the notice in {path.relative_to(root)}", file=sys.stderr)
    return 0
