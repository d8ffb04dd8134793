"""Run the numbered notebooks in order with papermill (what ``run_all.sh`` calls).

    python -m fairl_lib.pipeline [PROFILE] [--from NN] [--only NN] [--seed S] [--force] [--overrides TEXT]

- Executed copies go to ``results/<profile>/notebooks/``; a failing notebook stops the run with a
  non-zero exit naming the notebook and the failing cell, and its partial executed copy is kept.
- ``results/<profile>/run.json`` records the git commit, package versions, seed, profile and the
  start, end, duration and commit of each notebook (updated after every notebook, atomically; a
  partial rerun keeps the entries of the notebooks it did not run, with their own commits).
- Each notebook declares the figures and tables it promises in its metadata
  (``metadata.fairl.figures`` / ``metadata.fairl.tables``, names without extension). At the end the
  runner checks that each exists and is newer than the start of the run.
- The ``cpu`` and ``paper`` profiles copy their PNG figures to the top-level ``figures/``;
  ``smoke`` never touches it.
- A finished run ends with its runtime table (:func:`summary_table`: seconds, minutes and peak
  memory per notebook, and the total); ``python -m fairl_lib.pipeline --summary RUN_JSON`` prints
  the same table for any ``run.json``.
- While a notebook runs, its printed output reaches the terminal (or CI's log) line by line,
  prefixed ``[NN]`` (the long steps print their own progress: RLHF steps, generation chunks); when
  it prints nothing for 30 seconds, the runner prints ``[NN] cell k/N running for ...``
  (:func:`run_notebook`).
- A finished run ends by building its static site, ``results/<profile>/site/index.html``
  (:mod:`fairl_lib.analysis.site`); ``python -m fairl_lib.pipeline --site PROFILE`` builds it for
  the last run of a profile without running anything. The cpu profile's site is also copied to
  ``docs/site/`` (what a reader opens without running anything), and the provenance notice in
  README.md and ``docs/site/`` is rewritten (:mod:`fairl_lib.analysis.provenance`: which commit made
  the published outputs, and which inputs changed since).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path

import nbformat
import papermill as pm
import psutil
from jupyter_client import AsyncKernelManager
from papermill.engines import NBClientEngine, papermill_engines

from fairl_lib import sections  # noqa: F401 (every config section registered)
from fairl_lib.analysis.provenance import ProvenanceError, check, status_lines, write_notices
from fairl_lib.analysis.site import build_site
from fairl_lib.artifacts import read_json, write_json
from fairl_lib.config import available_profiles, load_profile, make_config
from fairl_lib.llm.fast.precision import cpu_flags, cpu_has_bf16, cpu_model
from fairl_lib.llm.progress import EVERY_SECONDS, Heartbeat, PrefixedLines, fmt_duration
from fairl_lib.paths import repo_root, results_dir

PUBLISHING_PROFILES = {"cpu", "paper"}
SITE_PROFILE = "cpu"  # the reference run whose site is copied to docs/site/
REFERENCE_SEED = 0  # only a run with this seed publishes figures/, REPORT.md and docs/site (other seeds: results only)
TRACKED_PACKAGES = ("torch", "transformers", "trl", "accelerate", "datasets", "sentence-transformers",
                    "scikit-learn", "numpy", "pandas", "papermill", "fairl")


class PipelineError(RuntimeError):
    """A notebook failed or a promised output is missing."""


def notebooks_dir() -> Path:
    return repo_root() / "notebooks"


def discover(only: str | None = None, start: str | None = None) -> list[Path]:
    """The numbered notebooks ``NN_name.ipynb`` in order, filtered by ``--only`` / ``--from``."""
    books = sorted(p for p in notebooks_dir().glob("[0-9][0-9]_*.ipynb"))
    numbers = [p.name[:2] for p in books]
    for flag, value in (("--only", only), ("--from", start)):
        if value is not None and value.zfill(2) not in numbers:
            raise PipelineError(f"{flag} {value}: no such notebook. Available: {', '.join(numbers)}.")
    if only is not None:
        return [p for p in books if p.name[:2] == only.zfill(2)]
    if start is not None:
        return [p for p in books if p.name[:2] >= start.zfill(2)]
    return books


def declared_parameters(path: Path) -> set[str]:
    import papermill as pm

    return set(pm.inspect_notebook(str(path)))


def check_parameters(path: Path, params: dict) -> None:
    """Refuse parameters the notebook does not declare (papermill itself only warns)."""
    declared = declared_parameters(path)
    if not declared:
        raise PipelineError(f"{path.name} has no cell tagged 'parameters'.")
    unknown = sorted(set(params) - declared)
    if unknown:
        raise PipelineError(f"{path.name}: unknown parameter(s) {unknown}. Valid: {sorted(declared)}.")


def promised_outputs(path: Path) -> dict[str, list[str]]:
    meta = nbformat.read(path, as_version=4).metadata.get("fairl", {})
    return {"figures": list(meta.get("figures", [])), "tables": list(meta.get("tables", [])),
            "metrics": list(meta.get("metrics", [path.stem]))}


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_root(), capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo_root(),
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except OSError:
        return "unknown"


def torch_build() -> str:
    """Which torch build runs: ``"cpu"`` or ``"cuda <version>"`` (a CUDA build on a CPU-only machine still
    runs on the CPU, but the setup meant to install the CPU build)."""
    try:
        import torch
    except ImportError:
        return "not installed"
    return "cpu" if torch.version.cuda is None else f"cuda {torch.version.cuda}"


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "torch_build": torch_build()}
    for pkg in TRACKED_PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def machine() -> dict[str, object]:
    """The CPU a run's times and precision belong to: model name, core count, native bf16."""
    flags = cpu_flags()
    return {"cpu_model": cpu_model(), "cpus": os.cpu_count(), "bf16": cpu_has_bf16(),
            "avx512": "avx512f" in flags, "avx2": "avx2" in flags}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class _WatchedEngine(NBClientEngine):
    """papermill's own nbclient engine that hands its execution manager (the notebook being
    executed, with each cell's papermill status) to the runner's :class:`_CellWatch`."""

    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, cell_watch=None, **kwargs):
        if cell_watch is not None:
            cell_watch.nb_man = nb_man
        return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)


papermill_engines.register("fairl-watched", _WatchedEngine)


def _kernel_logging_to(stream) -> type:
    """A kernel manager class whose kernels' own stdout and stderr go to ``stream`` (a file).

    ipykernel captures what is written to the kernel's file descriptors 1 and 2 (by its worker
    processes too) into the notebook's output, and also copies it to the kernel's own stdout and
    stderr. The notebook's copy is the one the runner forwards, prefixed, to the terminal; sending
    the kernel's own streams to a log file keeps them (and the kernel's start-up messages) without
    printing every worker's line twice.
    """

    class LoggedKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw):
            kw.setdefault("stdout", stream)
            kw.setdefault("stderr", stream)
            return await super().start_kernel(**kw)

    return LoggedKernelManager


class _CellWatch:
    """``status()``: ``[NN] cell k/N running for ... | notebook ... | <the cell's first line>``."""

    def __init__(self, tag: str) -> None:
        self.tag, self.nb_man, self.t0 = tag, None, time.monotonic()

    def status(self) -> str:
        total = f"notebook running for {fmt_duration(time.monotonic() - self.t0)}"
        cells = [c for c in self.nb_man.nb.cells if c.cell_type == "code"] if self.nb_man else []
        running = [(k, c) for k, c in enumerate(cells, 1) if c.metadata.get("papermill", {}).get("status") == "running"]
        if not running:
            return f"[{self.tag}] {total}"
        k, cell = running[0]
        since = ""
        try:
            start = dt.datetime.fromisoformat(cell.metadata.papermill["start_time"])
            since = f" for {fmt_duration((dt.datetime.now(start.tzinfo) - start).total_seconds())}"
        except (KeyError, TypeError, ValueError):
            pass
        first = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")
        first = first if len(first) <= 70 else first[:67] + "..."
        return f"[{self.tag}] cell {k}/{len(cells)} running{since} | {total} | {first}"


def run_notebook(path: Path, profile: str, seed: int, force: bool, out_dir: Path,
                 every_seconds: float = EVERY_SECONDS, overrides: str = "") -> Path:
    """Execute one notebook with papermill; raise :class:`PipelineError` naming the failing cell.

    The kernel's stdout and stderr are forwarded line by line, prefixed ``[NN]`` (papermill's
    ``stdout_file`` / ``stderr_file``), so the notebook's own progress lines (RLHF steps, generation
    chunks, worker processes) show while it runs. A heartbeat prints ``[NN] cell k/N running for
    ...`` whenever nothing was printed for ``every_seconds``: a long step is never silent for
    longer in a terminal or in CI's log. Plain lines, no progress bar (see :mod:`fairl_lib.llm.progress`).
    The kernel process's own stdout and stderr go to ``logs/NN_name.kernel.log`` beside ``out_dir``
    (:func:`_kernel_logging_to`).
    """
    params = {"PROFILE": profile, "SEED": seed, "FORCE": force, **({"OVERRIDES": overrides} if overrides else {})}
    check_parameters(path, params)
    out = out_dir / path.name
    kernel_log = out_dir.parent / "logs" / f"{path.stem}.kernel.log"
    kernel_log.parent.mkdir(parents=True, exist_ok=True)
    tag, watch, lock = path.name[:2], _CellWatch(path.name[:2]), threading.Lock()
    with kernel_log.open("w") as klog, Heartbeat(watch.status, every_seconds, lock=lock) as beat:
        stdout = PrefixedLines(sys.stdout, f"[{tag}] ", beat.touch, lock)
        stderr = PrefixedLines(sys.stderr, f"[{tag}] ", beat.touch, lock)
        try:
            pm.execute_notebook(str(path), str(out), parameters=params, cwd=str(path.parent),
                                progress_bar=False, log_output=False, kernel_name="python3",
                                engine_name="fairl-watched", cell_watch=watch,
                                kernel_manager_class=_kernel_logging_to(klog),
                                stdout_file=stdout, stderr_file=stderr)
        except pm.PapermillExecutionError as err:
            raise PipelineError(
                f"{path.name} failed in cell {err.exec_count} ({err.ename}: {err.evalue}).\n"
                f"The partial executed notebook is kept at {out}; the kernel's own messages are in "
                f"{kernel_log}.") from err
        finally:
            stdout.flush_partial()
            stderr.flush_partial()
    return out


def check_outputs(books: list[Path], profile: str, since: float) -> list[Path]:
    """Every promised figure (PNG+PDF), table (CSV) and metrics file exists and is fresh."""
    res = results_dir(profile)
    problems, found = [], []
    for book in books:
        promised = promised_outputs(book)
        wanted = ([res / "figures" / f"{n}.{e}" for n in promised["figures"] for e in ("png", "pdf")]
                  + [res / "tables" / f"{n}.csv" for n in promised["tables"]]
                  + [res / "metrics" / f"{n}.json" for n in promised["metrics"]])
        for path in wanted:
            if not path.exists():
                problems.append(f"{book.name} promised {path} but it is missing")
            elif path.stat().st_mtime < since:
                problems.append(f"{book.name} promised {path} but it is older than this run")
            else:
                found.append(path)
    if problems:
        raise PipelineError("Missing or stale outputs:\n  " + "\n  ".join(problems))
    return found


def publish_figures(profile: str, books: list[Path]) -> int:
    """Copy the PNGs of ``books`` from ``results/<profile>/figures`` to the top-level ``figures/``."""
    target = repo_root() / "figures"
    target.mkdir(exist_ok=True)
    count = 0
    for book in books:
        for name in promised_outputs(book)["figures"]:
            shutil.copy2(results_dir(profile) / "figures" / f"{name}.png", target / f"{name}.png")
            count += 1
    return count


def publish_report(profile: str) -> Path | None:
    """Copy ``results/<profile>/REPORT.md`` to the repository (``REPORT.md`` for cpu,
    ``REPORT-<profile>.md`` otherwise), beside the top-level ``figures/`` its links point into."""
    src = results_dir(profile) / "REPORT.md"
    if not src.exists():
        return None
    target = repo_root() / ("REPORT.md" if profile == "cpu" else f"REPORT-{profile}.md")
    shutil.copy2(src, target)
    return target


class PeakRSS:
    """The largest resident memory (MB) of this process's descendants while the block runs.

    A thread samples the summed RSS of every child process (the notebook's kernel and any worker
    processes it starts) every ``interval`` seconds; ``peak_mb`` is the largest sum seen, so each
    notebook gets its own peak (not a running maximum over the notebooks before it).
    """

    def __init__(self, interval: float = 0.25) -> None:
        self.interval, self.peak_mb = interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> float:
        total = 0
        for child in psutil.Process().children(recursive=True):
            try:
                total += child.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return total / 2**20

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self._sample())
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def summary_table(run: dict) -> str:
    """A ``run.json`` record as a markdown table: one row per notebook, then the total.

    Columns: notebook, status, seconds, minutes, peak memory (MB, the entry's ``peak_rss_mb``: the
    summed resident memory of the notebook's kernel and its workers). The total row sums the
    notebooks' seconds, shows the largest peak, and carries the run's own status. A value the
    entry lacks (a failed notebook has no peak) shows as ``-``. The rows are the notebooks the
    record holds, so after ``--only``/``--from`` they include entries kept from earlier runs.
    """
    notebooks = run.get("notebooks")
    if not isinstance(notebooks, dict):
        raise ValueError("not a run.json: it has no 'notebooks' record")
    lines = ["| notebook | status | seconds | minutes | peak memory (MB) |", "|---|---|--:|--:|--:|"]
    total, peaks = 0.0, []
    for stem in sorted(notebooks):
        entry = notebooks[stem]
        if not isinstance(entry, dict):
            raise ValueError(f"not a run.json: the entry of {stem} is not a record")
        seconds, peak = entry.get("seconds"), entry.get("peak_rss_mb")
        total += seconds or 0.0
        if peak is not None:
            peaks.append(peak)
        lines.append(f"| {stem} | {entry.get('status', '-')} | {_cell(seconds, ',.0f')} | "
                     f"{_cell(None if seconds is None else seconds / 60, '.1f')} | {_cell(peak, ',.0f')} |")
    lines.append(f"| **total** | {run.get('status') or '-'} | **{total:,.0f}** | **{total / 60:.1f}** | "
                 f"{_cell(max(peaks) if peaks else None, ',.0f')} |")
    cpu, prec = run.get("machine"), run.get("precision")
    if isinstance(cpu, dict) and isinstance(prec, dict):
        lines.append(f"\nMachine: {cpu.get('cpu_model') or 'unknown CPU'}, {cpu.get('cpus')} cores, native bf16: "
                     f"{'yes' if cpu.get('bf16') else 'no'}; precision of the last run: generation "
                     f"{prec.get('gen')}, RLHF {prec.get('rlhf')}.")
    return "\n".join(lines)


def print_summary(path: str) -> int:
    """``--summary RUN_JSON``: print :func:`summary_table` of a finished run; one-line error, exit 2."""
    try:
        run = read_json(Path(path))
        if not isinstance(run, dict):
            raise ValueError("not a run.json: expected a JSON object")
        table = summary_table(run)
    except FileNotFoundError:
        print(f"error: {path}: no such file (a run writes results/<profile>/run.json)", file=sys.stderr)
        return 2
    except (OSError, ValueError) as err:  # json.JSONDecodeError is a ValueError
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        if isinstance(err, ValueError) and not msg.startswith("not a run.json"):
            msg = f"not a run.json ({msg})"
        print(f"error: {path}: {msg}", file=sys.stderr)
        return 2
    print(table)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="run_all.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", nargs="?", default="cpu", help=f"one of {available_profiles()} (default cpu)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--from", dest="start", metavar="NN", help="start at notebook NN")
    group.add_argument("--only", metavar="NN", help="run only notebook NN")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="recompute cached stages")
    parser.add_argument("--overrides", default="", metavar="TEXT",
                        help="profile overrides for every notebook, e.g. 'rlhf.precision=\"fp32\"; "
                             "gen.precision=\"fp32\"' (syntax in the README)")
    parser.add_argument("--summary", metavar="RUN_JSON",
                        help="print the runtime table of a finished run (e.g. results/cpu/run.json) and exit")
    parser.add_argument("--site", metavar="PROFILE",
                        help="build the static site of the last run of PROFILE (results/PROFILE/site/index.html) "
                             "from its executed notebooks, report, figures and tables, and exit")
    args = parser.parse_args(argv)
    if args.summary is not None:
        return print_summary(args.summary)
    if args.site is not None:
        return _site(args.site)

    try:
        load_profile(args.profile)
        cfg = make_config(args.profile, seed=args.seed, overrides=args.overrides)
        books = discover(args.only, args.start)
    except Exception as err:  # noqa: BLE001 - one clear line for the user
        print(f"error: {err}", file=sys.stderr)
        return 2
    os.environ["FAIRL_BATCH"] = "1"
    if args.profile != "paper":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    res = results_dir(args.profile)
    out_dir = res / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    run_file = res / "run.json"
    record = read_json(run_file) if run_file.exists() else {"notebooks": {}}
    for entry in record["notebooks"].values():  # kept from a record that named one commit for the whole run
        entry.setdefault("git_commit", record.get("git_commit"))
    record.update({"profile": args.profile, "seed": args.seed, "git_commit": _git_commit(),
                   "packages": _versions(), "started": _now(), "finished": None, "status": "running",
                   "overrides": args.overrides, "machine": machine(),
                   "precision": {"gen": cfg.gen.precision, "rlhf": cfg.rlhf.precision}})
    write_json(run_file, record)

    started = time.time()
    print(f"fairl pipeline | profile {args.profile} | seed {args.seed} | {len(books)} notebook(s) | results -> {res}",
          flush=True)
    for i, book in enumerate(books, 1):
        t0 = time.time()
        # the commit each notebook starts from: the checkout can move while a long run goes on, and a notebook
        # imports the library as it is when it starts
        entry = {"start": _now(), "precision": record["precision"]["rlhf"], "git_commit": _git_commit()}
        print(f"[{i}/{len(books)}] {book.name} ...", flush=True)
        try:
            with PeakRSS() as mem:
                run_notebook(book, args.profile, args.seed, args.force, out_dir, overrides=args.overrides)
        except Exception as err:  # noqa: BLE001
            entry.update(end=_now(), seconds=round(time.time() - t0, 1), status="failed")
            record["notebooks"][book.stem] = entry
            record.update(status=f"failed in {book.name}", finished=_now())
            write_json(run_file, record)
            print(f"FAILED: {err}", file=sys.stderr, flush=True)
            return 1
        entry.update(end=_now(), seconds=round(time.time() - t0, 1), status="ok", peak_rss_mb=round(mem.peak_mb, 1))
        record["notebooks"][book.stem] = entry
        write_json(run_file, record)
        print(f"[{i}/{len(books)}] {book.name} done in {entry['seconds']:.1f} s", flush=True)

    try:
        found = check_outputs(books, args.profile, since=started - 1)
    except PipelineError as err:
        record.update(status="missing outputs", finished=_now())
        write_json(run_file, record)
        print(f"FAILED: {err}", file=sys.stderr)
        return 1
    record.update(status="ok", finished=_now(), seconds=round(time.time() - started, 1))
    write_json(run_file, record)
    print(f"All {len(books)} notebook(s) ran in {time.time() - started:.1f} s. Outputs:")
    for path in found:
        print(f"  {path.relative_to(res.parent.parent) if res.parent.parent in path.parents else path}")
    publish = args.profile in PUBLISHING_PROFILES and args.seed == REFERENCE_SEED
    if args.profile in PUBLISHING_PROFILES and not publish:
        print(f"Seed {args.seed} is not the reference seed {REFERENCE_SEED}: figures/, REPORT.md and docs/site keep "
              "the reference run's outputs (this run's are under its results folder).")
    if publish:
        print(f"Copied {publish_figures(args.profile, books)} figure(s) to {repo_root() / 'figures'}")
        ran_report = any(b.stem.endswith("_reproduction_report") for b in books)
        if ran_report and (report := publish_report(args.profile)):
            print(f"Copied the reproduction report to {report}")
    print(f"\nRuntimes ({run_file}):\n{summary_table(record)}")
    return _site(args.profile, publish=publish)


def _site(profile: str, publish: bool = True) -> int:
    """``--site PROFILE`` (and the end of every run): build the run's static site; one-line error, exit 1.

    The reference profile's site (cpu) is also copied to ``docs/site/``, the copy readers open
    without running anything (README, "Read it without running it"), as a cpu run refreshes
    ``figures/`` and ``REPORT.md``; then the provenance notice of README.md and ``docs/site/`` is
    rewritten for the site just copied (:func:`fairl_lib.analysis.provenance.write_notices`).
    """
    try:
        index = build_site(results_dir(profile))
        size = sum(p.stat().st_size for p in index.parent.rglob("*") if p.is_file()) / 1e6
        print(f"Site ({size:.1f} MB): {index} (open it in a browser; it needs no server and no network)")
        if profile == SITE_PROFILE and publish:
            target = repo_root() / "docs" / "site"
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(index.parent, target)
            print(f"Copied the site to {target}")
            try:
                status = check(repo_root())
                write_notices(repo_root(), status)
                print(f"Provenance: {status_lines(status)[0]}")
            except (ProvenanceError, ValueError) as err:
                print(f"warning: provenance notice not written: {err}", file=sys.stderr)
    except Exception as err:  # noqa: BLE001 - one clear line for the user
        print(f"error: site of {profile}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
