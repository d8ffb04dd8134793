"""Which commit made the committed results, and whether the code that made them has moved on since.

    python -m fairl_lib provenance            # the status, and every input file changed since
    python -m fairl_lib provenance --write    # also rewrite the notice in README.md and docs/site/

``REPORT.md``, ``figures/`` and ``docs/site/`` are the committed outputs of one whole cpu run. The
commit that made them is recorded twice: in the run record the site builder copies to
``docs/site/run.json`` (``git_commit``, and each notebook's own commit, so that a partial rerun
published over an older run shows as two commits), and in ``REPORT.md``'s line ``- Run: commit `...```.
:func:`recorded_run` reads both (``docs/site/run.json`` first). :func:`check` compares the *inputs*
that made the outputs (:data:`INPUTS`: the library ``fairl_lib/`` with its profiles, the notebooks,
``requirements.txt``) at that commit with the checkout, using git: the working tree by default (HEAD
plus uncommitted changes, so a notice written before a commit is the one that commit needs), or a
revision (``against="HEAD"``).

A visible notice, not a failing test. A cpu run takes over an hour on two cores; a test that failed
whenever the library changed after the last run would either block every change until that hour is
spent or be skipped until nobody reads it. Outputs made by older code are still what that code
computed, and a reader needs to know which code that was. So the check never fails anything: it
writes a notice (:func:`notice_markdown`, :func:`notice_html`) into README.md's Results section and
at the top of the site's contents and report pages: "Stale since <commit>: these inputs have changed
since: ...", or "Current" when nothing changed. What is tested instead is that the notice tells the
truth: ``tests/test_provenance.py`` checks that the committed notices are the ones the check writes
now (refreshing them takes a second: ``--write``), and, in a temporary clone, that changing one line
of ``fairl_lib`` turns the status stale and puts the notice in README and in a built site. The
notice names the inputs coarsely (the library as one, each profile, notebook and requirements file
by name) so that it changes when the kind of change does, not with every edit; the command lists
every file.

The site builder (:func:`fairl_lib.analysis.site.build_site`) writes the same notice for the run it
renders (:func:`check_run`), and a cpu run of ``run_all.sh`` rewrites README's and ``docs/site/``'s
when it publishes (``Current``: the run's commit is the checkout's).
"""
from __future__ import annotations

import html
import json
import re
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

from fairl_lib.paths import repo_root

INPUTS = ("fairl_lib", "notebooks", "requirements.txt")
LIBRARY, PROFILES = "fairl_lib/", "fairl_lib/profiles/"
OUTPUTS = "REPORT.md, figures/ and docs/site/"
SITE_RUN = Path("docs") / "site" / "run.json"
WIDTH = 104  # README's line length
SITE_PAGES = ("index.html", "report.html")  # the pages of docs/site/ that carry the notice
README_START = "<!-- provenance: written by `python -m fairl_lib provenance --write`, do not edit -->"
README_END = "<!-- /provenance -->"
HTML_START, HTML_END = "<!-- fairl-provenance -->", "<!-- /fairl-provenance -->"
STYLE = {  # background, border: the notice is styled inline, so that it also fits pages built before it
    "current": ("#eef6ee", "#9cc59c"),
    "stale": ("#fff4e0", "#e0a040"),
    "unknown": ("#f0f0f0", "#b0b0b0"),
}

REPORT_COMMIT = re.compile(r"^- Run: commit `([0-9a-f]{7,40})(-dirty)?`", re.MULTILINE)
REPORT_PROFILE = re.compile(r"^- Profile `([\w-]+)`, seed (\d+)", re.MULTILINE)


class ProvenanceError(RuntimeError):
    """git cannot answer: not a repository, or the recorded commit is not in its history."""


@dataclass(frozen=True)
class RunRecord:
    """Which commits made a run's outputs: ``commits`` maps each full or short hash to what it made
    (notebook stems, ``REPORT.md``; empty when the record does not say); ``dirty`` when the run's
    working tree had uncommitted changes on top of its commit."""

    commits: dict[str, list[str]]
    profile: str = ""
    seed: int | None = None
    dirty: bool = False
    source: str = ""


@dataclass(frozen=True)
class Provenance:
    """The answer of :func:`check`: ``status`` is ``current`` (no input changed since the run's
    commit), ``stale`` (``changed`` lists the input files that did) or ``unknown`` (``reason`` says
    why: no record, or a commit this clone does not have)."""

    record: RunRecord | None
    status: str
    changed: tuple[str, ...] = ()
    reason: str = ""
    against: str = "the working tree"

    @property
    def commit(self) -> str:
        """The short hash of the first commit the record names (its only one, for a whole run), '' if none."""
        return short(next(iter(self.record.commits))) if self.record and self.record.commits else ""


def short(commit: str) -> str:
    return commit[:7]


def _git(root: Path, *args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    except OSError as err:
        raise ProvenanceError(f"git is not available ({err})") from err
    if out.returncode != 0:
        raise ProvenanceError(f"git {' '.join(args)}: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else 'failed'}")
    return out.stdout


def split_commit(value: str | None) -> tuple[str | None, bool]:
    """``"abc...-dirty"`` -> ``("abc...", True)``; ``"unknown"`` or nothing -> ``(None, False)``."""
    if not value or not re.match(r"^[0-9a-f]{7,40}(-dirty)?$", str(value)):
        return None, False
    text = str(value)
    return text.removesuffix("-dirty"), text.endswith("-dirty")


def record_of_run(run: dict, source: str = "run.json") -> RunRecord:
    """A :class:`RunRecord` from a ``run.json`` record: each notebook's commit when the entries carry
    one (a partial rerun keeps the older notebooks' entries), else the run's ``git_commit``."""
    commits: dict[str, list[str]] = {}
    dirty = False
    for stem, entry in sorted((run.get("notebooks") or {}).items()):
        commit, d = split_commit(entry.get("git_commit") if isinstance(entry, dict) else None)
        if commit:
            commits.setdefault(commit, []).append(stem)
            dirty |= d
    if not commits:
        commit, dirty = split_commit(run.get("git_commit"))
        if commit:
            commits[commit] = []
    return RunRecord(commits, str(run.get("profile") or ""), run.get("seed"), dirty, source)


def recorded_run(root: Path | None = None) -> RunRecord | None:
    """The record of the committed outputs: ``docs/site/run.json``, else ``REPORT.md``'s run line;
    a commit ``REPORT.md`` names that the site's record does not is added (the two came from
    different runs). None when neither names a commit."""
    root = Path(root or repo_root())
    record = None
    if (root / SITE_RUN).exists():
        try:
            record = record_of_run(json.loads((root / SITE_RUN).read_text()), SITE_RUN.as_posix())
        except (OSError, ValueError):
            record = None
    report = root / "REPORT.md"
    text = report.read_text() if report.exists() else ""
    m = REPORT_COMMIT.search(text)
    if m:
        commit, dirty = m.group(1), bool(m.group(2))
        if record is None or not record.commits:
            p = REPORT_PROFILE.search(text)
            record = RunRecord({commit: ["REPORT.md"]}, p.group(1) if p else "", int(p.group(2)) if p else None,
                               dirty, "REPORT.md")
        elif not any(c.startswith(commit) or commit.startswith(c) for c in record.commits):
            record = RunRecord({**record.commits, commit: ["REPORT.md"]}, record.profile, record.seed,
                               record.dirty or dirty, record.source + ", REPORT.md")
    return record if record is not None and record.commits else None


def changed_inputs(root: Path, commit: str, against: str | None = None) -> list[str]:
    """Input files (:data:`INPUTS`) that differ between ``commit`` and ``against`` (a revision; None =
    the working tree, untracked files included), sorted; raises :class:`ProvenanceError` when the
    commit is not in the clone's history."""
    try:
        _git(root, "cat-file", "-e", f"{commit}^{{commit}}")
    except ProvenanceError:
        raise ProvenanceError(f"commit {short(commit)} is not in this clone's history (a shallow clone?)") from None
    names = set(_git(root, "diff", "--name-only", commit, *([against] if against else []), "--", *INPUTS).split())
    if against is None:
        names |= set(_git(root, "ls-files", "--others", "--exclude-standard", "--", *INPUTS).split())
    return sorted(names)


def check_record(record: RunRecord | None, root: Path | None = None, against: str | None = None) -> Provenance:
    """:func:`check` for a given record."""
    root = Path(root or repo_root())
    where = f"commit {against}" if against else "the working tree"
    if record is None:
        return Provenance(None, "unknown", reason="the run's record names no commit", against=where)
    changed: set[str] = set()
    try:
        for commit in record.commits:
            changed |= set(changed_inputs(root, commit, against))
    except ProvenanceError as err:
        return Provenance(record, "unknown", reason=str(err), against=where)
    return Provenance(record, "stale" if changed else "current", tuple(sorted(changed)), against=where)


def check(root: Path | None = None, against: str | None = None) -> Provenance:
    """The provenance of the committed outputs of the checkout at ``root`` (default: this one)."""
    return check_record(recorded_run(root), root, against)


def check_run(run: dict, root: Path | None = None) -> Provenance:
    """The provenance of a run folder's outputs from its ``run.json`` record (for the site builder)."""
    record = record_of_run(run)
    return check_record(record if record.commits else None, root)


def describe_inputs(changed) -> list[str]:
    """The changed inputs as the notice names them: the library once, each profile, notebook and
    requirements file by name (they change rarely, and each says which results moved)."""
    out, library = [], False
    for name in sorted(changed):
        if name.startswith(LIBRARY) and not name.startswith(PROFILES):
            library = True
        else:
            out.append(name)
    return ([LIBRARY] if library else []) + out


def _made_by(p: Provenance, code) -> str:
    rec = p.record
    seed = f", seed {rec.seed}" if rec.seed is not None else ""
    run = f"the {rec.profile} run" if rec.profile else "the run"
    if len(rec.commits) == 1:
        commit = code(short(next(iter(rec.commits))))
        made = f"{run} of commit {commit}{seed}"
    else:
        parts = [f"{code(short(c))} ({', '.join(what) or 'the record'})" for c, what in rec.commits.items()]
        made = f"{run}{seed}, from commits {', '.join(parts)}"
    if rec.dirty:
        made += " with uncommitted changes on top (some changes below may be the run's own)"
    return made


def notice_text(p: Provenance, what: str = OUTPUTS, code=lambda s: f"`{s}`") -> str:
    """The notice as one paragraph, its status before the first colon; ``code`` formats names
    (markdown backticks by default)."""
    inputs = ", ".join(code(x) for x in ("fairl_lib/", "notebooks/", "requirements.txt"))
    if p.status == "unknown":
        return f"Provenance unknown: {p.reason}, so {what} cannot be checked against the code ({inputs})."
    made = _made_by(p, code)
    if p.status == "current":
        return f"Current: {what} were made by {made}; none of the inputs ({inputs}) has changed since."
    changed = ", ".join(code(x) + (" (the library)" if x == LIBRARY else "") for x in describe_inputs(p.changed))
    rerun = code(f"./run_all.sh {p.record.profile or 'cpu'}")
    return (f"Stale since {code(p.commit)}: {what} were made by {made}; these inputs have changed since: "
            f"{changed}. They show what that code computed until a new run ({rerun}) refreshes them; "
            f"{code('python -m fairl_lib provenance')} lists every changed file.")


def notice_markdown(p: Provenance, what: str = OUTPUTS) -> str:
    """README's block: the markers and a quoted paragraph, bold status first."""
    head, _, rest = notice_text(p, what).partition(":")
    text = textwrap.fill(f"**{head}:**{rest}", WIDTH, initial_indent="> ", subsequent_indent="> ",
                         break_long_words=False, break_on_hyphens=False)
    return f"{README_START}\n{text}\n{README_END}"


def notice_html(p: Provenance, what: str = "this site's pages, figures and tables") -> str:
    """The site's block, between :data:`HTML_START` and :data:`HTML_END`, styled inline."""
    text = html.escape(notice_text(p, what, code=lambda s: f"\x00{s}\x01"))
    text = text.replace("\x00", "<code>").replace("\x01", "</code>")
    head, _, rest = text.partition(":")
    background, border = STYLE[p.status]
    return (f'{HTML_START}<div class="fairl-provenance {p.status}" style="font-family: system-ui, sans-serif; '
            f'font-size: 14px; line-height: 1.4; padding: 8px 16px; background: {background}; '
            f'border-bottom: 1px solid {border};"><strong>{head}:</strong>{rest}</div>{HTML_END}')


def replace_block(text: str, start: str, end: str, block: str) -> str | None:
    """``text`` with the block from ``start`` to ``end`` replaced by ``block``; None if it has none."""
    i = text.find(start)
    j = text.find(end, i)
    if i < 0 or j < 0:
        return None
    return text[:i] + block + text[j + len(end):]


def put_site_notice(page: str, block: str) -> str:
    """A site page with its notice block replaced, or inserted after the page's first navigation
    line (pages built before the notice existed)."""
    out = replace_block(page, HTML_START, HTML_END, block)
    if out is not None:
        return out
    nav = page.find("</nav>")
    if nav < 0:
        raise ValueError("the page has no notice block and no navigation line to put one under")
    return page[:nav + len("</nav>")] + "\n" + block + page[nav + len("</nav>"):]


def write_notices(root: Path | None = None, p: Provenance | None = None) -> list[Path]:
    """Rewrite the notice in ``README.md`` (its marked block, which must exist) and in
    ``docs/site/``'s contents and report pages; returns the files that changed."""
    root = Path(root or repo_root())
    p = p or check(root)
    written = []
    readme = root / "README.md"
    text = readme.read_text()
    new = replace_block(text, README_START, README_END, notice_markdown(p))
    if new is None:
        raise ValueError(f"{readme} has no provenance block ({README_START} ... {README_END})")
    if new != text:
        readme.write_text(new)
        written.append(readme)
    for name in SITE_PAGES:
        page = root / "docs" / "site" / name
        if page.exists():
            text = page.read_text()
            new = put_site_notice(text, notice_html(p))
            if new != text:
                page.write_text(new)
                written.append(page)
    return written


def status_lines(p: Provenance) -> list[str]:
    """What ``python -m fairl_lib provenance`` prints: the notice, then every changed input file."""
    lines = [notice_text(p)]
    if p.record is not None:
        lines.append(f"(recorded in {p.record.source}; compared with {p.against})")
    if p.changed:
        lines += ["", f"{len(p.changed)} input file(s) changed since:"] + [f"  {name}" for name in p.changed]
    return lines
