"""Command line: ``python -m fairl_lib <group> <command> ...``.

Adding a command is one decorated function::

    @command("score reward", "Score texts with a learned reward.",
             arg("path", help="reward model folder"))
    def score_reward(ns: argparse.Namespace) -> int:
        ...
        return 0

The words of the first argument are the sub-command path; groups (``score``, ``assets``) are
created on first use; ``description=`` gives a command a longer ``--help`` text. Results go to stdout;
progress and errors to stderr. A user's mistake (a folder or file that does not exist, a malformed line
of a data file, an unknown profile, scorer, embedder or asset) prints one line saying what to do and
exits 2, without a traceback (:class:`UsageError` and the library's own error types).

The scoring and audit commands import :mod:`fairl_lib.llm.models` and :mod:`fairl_lib.llm.scorers` and the
stages inside their functions, and the models they load (sentence-transformers among them) on first use;
the package itself (``fairl_lib/__init__`` -> :mod:`fairl_lib.sections`, every config section's owner)
already brings torch and transformers, so ``--help`` waits for those.
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

from fairl_lib import sections  # noqa: F401 (every config section registered)
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
    description: str | None = None


COMMANDS: list[Command] = []
GROUP_HELP: dict[str, str] = {
    "score": "score texts (toxicity scorers, learned rewards)",
    "assets": "models and data: list, fetch and verify",
    "audit": "explanation sets of responses by training data (a file of yours, or the RLHF expert's rollouts)",
}


def arg(*flags: str, **kwargs: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    """One ``parser.add_argument(*flags, **kwargs)`` call, recorded for :func:`command`."""
    return flags, kwargs


def command(path: str, help: str, *args: tuple[tuple[str, ...], dict[str, Any]],
            description: str | None = None) -> Callable[[Handler], Handler]:
    """Register ``func(ns) -> exit code`` as the sub-command ``path`` (e.g. ``"score toxicity"``).

    ``description``: a longer text for the command's ``--help``, printed as written (line breaks kept);
    default ``help``.
    """

    def register(func: Handler) -> Handler:
        COMMANDS.append(Command(tuple(path.split()), help, args, func, description))
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
        p = subs[cmd.path[:-1]].add_parser(
            cmd.path[-1], help=cmd.help, description=cmd.description or cmd.help,
            formatter_class=argparse.RawDescriptionHelpFormatter if cmd.description else argparse.HelpFormatter)
        for flags, kwargs in cmd.args:
            p.add_argument(*flags, **kwargs)
        p.set_defaults(_func=cmd.func)
    return parser


def user_errors() -> tuple[type[Exception], ...]:
    """The exceptions that mean "the request was wrong", not "the program is broken"."""
    from fairl_lib.analysis.explain_data import DataError  # deferred: see the module docstring
    from fairl_lib.llm.scorers import ScorerError

    return (UsageError, AssetError, ScorerError, ConfigError, DataError)


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
         arg("path", help="reward folder (reward.safetensors + reward.json), e.g. results/cpu/rewards_tuned/"
             "me_fa_margin/seed0: the tuned rewards the ledger judges (rewards/ holds Eq. 3 as printed)"),
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


AUDIT_EXPLAIN_HELP = """\
Explain responses by training examples (Liu et al., Explainable RLHF; notebook 10): for each response,
the smallest set of its nearest training examples whose convex hull, in a sentence embedder's feature
space phi, comes within --tol of it. Nothing is trained.

training examples (--train FILE, JSON lines, one kind per file; "prompt" optional):
  {"prompt", "chosen", "rejected"}    a preference pair, represented by phi(chosen) - phi(rejected): a
                                      reward trained on pairs makes each pair's margin theta.(phi(chosen)
                                      - phi(rejected)) large, so a response that is a convex combination
                                      of some pairs' differences gets a weighted mean of their margins:
                                      those pairs are what made the reward favour it.
                                      (Differences and responses point different ways in
                                      MiniLM's space: expect relative residuals near 1.)
  {"prompt", "completion", "reward"}  a scored completion (e.g. an RL rollout), represented by
                                      phi(completion), the text training saw and rewarded; --min-reward R
                                      keeps those rewarded above R (a completion pushed down is no cause).
  without --train: the pipeline's own expert (--profile, --seed, --overrides; needs notebook 01): its
  RLOO rollouts with a positive advantage ([audit] pool), as scored completions.

responses (--responses FILE, or --prompt/--response for one): JSON lines {"response", "prompt"
  (optional)}; a file ending in .txt is plain text, one response per line. Blank lines are skipped.

features: --embedder NAME (default minilm, all-MiniLM-L6-v2 from a PyPI wheel, works offline), or
  --reward FOLDER: the embedder that saved reward was trained on (recorded in its reward.json). Each
  text's vector is cached under $FAIRL_CACHE/embeddings/NAME, keyed by the sha256 of the text, so a
  second call embeds nothing new (stderr says how many were embedded and how many read from the cache).

output, per response: its explaining examples, heaviest first (index: position among the file's
  examples from 0, or the rollout's row; line in the file; convex weight, the weights sum to 1; the
  example's fields), the residual ||phi(response) - sum_i w_i phi_i|| absolute and relative to the
  distance to the nearest example, k (nearest examples tried) and whether the relative residual is
  within --tol. Readable on stdout; --json OUT writes it as one JSON document instead (--json - to
  stdout).
"""


def _audit_responses(ns: argparse.Namespace) -> tuple[list[dict[str, Any]], str]:
    """``(responses, source)`` from ``--responses`` (JSON lines or .txt) or ``--prompt``/``--response``."""
    from fairl_lib.analysis.explain_data import read_responses

    if ns.responses:
        if ns.prompt is not None or ns.response is not None:
            raise UsageError("give --responses FILE or --prompt/--response, not both")
        return read_responses(ns.responses), str(ns.responses)
    if ns.response is None:
        raise UsageError("give --responses FILE (JSON lines of response and prompt, or a .txt file of responses), "
                         "or --response TEXT (with --prompt TEXT)")
    return [{**({"prompt": ns.prompt} if ns.prompt is not None else {}), "response": ns.response}], "--response"


def _audit_embedder(ns: argparse.Namespace, default: str) -> str:
    """The embedder name: ``--embedder``, the one ``--reward``'s folder records, or ``default``."""
    from fairl_lib.llm.models import EMBEDDERS  # deferred: heavy
    from fairl_lib.stages.irl_grid import reward_embedder

    if ns.embedder and ns.reward:
        raise UsageError("give --embedder NAME or --reward FOLDER, not both")
    name = ns.embedder or default
    if ns.reward:
        folder = Path(ns.reward)
        if not (folder / WEIGHT_FILE).is_file():
            raise UsageError(f"no reward in {folder} (no {WEIGHT_FILE}): pass a reward folder such as "
                             "results/cpu/rewards/me_fa_margin/seed0, written by notebook 04")
        name = reward_embedder(load_reward(folder), folder)
    if name not in EMBEDDERS:
        raise UsageError(f"unknown embedder {name!r}{f' (recorded with the reward in {ns.reward})' if ns.reward else ''}; "
                         f"valid names: {', '.join(EMBEDDERS)}")
    return name


@command("audit explain", "Explain responses by the training examples nearest them whose convex hull contains "
         "them (a training file of preference pairs or scored completions, or the expert's rollouts).",
         arg("--train", default=None, metavar="FILE",
             help="training examples, JSON lines of preference pairs or of scored completions (see above); "
                  "default: the expert of --profile and --seed"),
         arg("--responses", "--file", dest="responses", default=None, metavar="FILE",
             help='the responses to explain: JSON lines {"response", "prompt"}, or a .txt file, one per line'),
         arg("--prompt", default=None, help="the prompt of the one response given with --response"),
         arg("--response", default=None, help="one response to explain, instead of --responses"),
         arg("--embedder", default=None, metavar="NAME",
             help="sentence embedder for phi (default: minilm; without --train, the profile's)"),
         arg("--reward", default=None, metavar="FOLDER", help="use the embedder this saved reward was trained on"),
         arg("--features", default=None, choices=("completion", "prompt_completion"),
             help="embed the text alone (default; without --train, the profile's [audit] features) or prompt + "
                  "text (every line then needs a prompt)"),
         arg("--min-reward", type=float, default=None, metavar="R",
             help="scored completions only: explain with those whose reward is above R"),
         arg("--tol", type=float, default=None, metavar="X",
             help="accept a set whose residual is at most X times the distance to the nearest example "
                  "(default 0.75; without --train, the profile's [audit] tol)"),
         arg("--max-size", type=int, default=None, metavar="K",
             help="try at most the K nearest examples (default 16; without --train, the profile's [audit] max_size)"),
         arg("--json", default=None, metavar="OUT", help="write the answer as one JSON document to OUT ('-': stdout)"),
         profile_arg(),
         arg("--seed", type=int, default=0, help="without --train: seed of the expert (default 0)"),
         arg("--overrides", default="", help="without --train: profile overrides, e.g. 'audit.pool=all'"),
         description=AUDIT_EXPLAIN_HELP)
def audit_explain(ns: argparse.Namespace) -> int:
    from fairl_lib.analysis.explain_data import explain_responses, read_training, render_text, report
    from fairl_lib.artifacts import atomic_write_text, to_jsonable
    from fairl_lib.llm.models import get_embedder  # deferred: heavy
    from fairl_lib.stages.audit import AuditConfig, audit_config, expert_training_set
    from fairl_lib.stages.expert import NoRollouts

    responses, source = _audit_responses(ns)
    if ns.train:
        defaults, embedder_default = AuditConfig(), "minilm"
        train = read_training(ns.train, ns.min_reward)
    else:
        if ns.min_reward is not None:
            raise UsageError("--min-reward needs --train: the expert's pool is set by [audit] pool")
        cfg = make_config(ns.profile, seed=ns.seed, overrides=ns.overrides)
        defaults, embedder_default = audit_config(cfg), cfg.models.embedder
        try:
            train = expert_training_set(cfg)
        except NoRollouts as err:
            raise UsageError(str(err)) from None
        if not len(train):
            raise UsageError(f"{train.source}: no rollout is in the pool ([audit] pool={defaults.pool!r}); "
                             "pass --overrides 'audit.pool=all'")
    name = _audit_embedder(ns, embedder_default)
    features = ns.features or defaults.features
    tol = defaults.tol if ns.tol is None else ns.tol
    max_size = defaults.max_size if ns.max_size is None else ns.max_size
    embedder = get_embedder(name)
    before = dict(embedder.stats)
    records = explain_responses(train, responses, embedder.embed, tol, max_size, features, source)
    new, hits = (embedder.stats[k] - before[k] for k in ("computed", "hits"))
    print(f"embedded {new} text(s), {hits} read from the cache ({embedder.db_path})", file=sys.stderr)
    doc = report(train, records, name, features, tol, max_size)
    if ns.json:
        text = json.dumps(to_jsonable(doc), indent=2, ensure_ascii=False) + "\n"  # keys in reading order
        if ns.json == "-":
            sys.stdout.write(text)
        else:
            print(f"wrote {atomic_write_text(ns.json, text)}", file=sys.stderr)
    else:
        sys.stdout.write(render_text(doc))
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
