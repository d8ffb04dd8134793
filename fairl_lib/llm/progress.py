"""Progress of long steps as plain lines: ``[label] step k/N (p%) | s/step | ... | elapsed | ETA``.

One helper for every long step, so a run prints something at least every 30 seconds in a terminal
and in CI's log alike:

- :class:`Progress`: a counted loop (RLHF steps, generation chunks). ``update()`` prints a line
  when ``every_seconds`` have passed since the last one, and always for the first and the last
  item; each line has the rate, the elapsed time and the ETA, plus any values given (mean reward, KL).
- :class:`Heartbeat`: a daemon thread that prints a status line whenever nothing was printed for
  ``every_seconds`` (the runner's "notebook NN, cell k/N" while a silent cell runs).
- :class:`PrefixedLines`: a write-only text stream that writes each complete line with a prefix
  (the runner forwards a notebook kernel's output through it, as ``[01] ...``).

Plain lines, never a bar redrawn in place: the kernel's output, its worker processes' output and
the runner's own lines interleave in one log, and a log file (CI) cannot redraw. Every write is
flushed, so lines printed by worker processes (whose stdout is a pipe, block-buffered by default)
reach the log when they are printed, not when the worker exits.
"""
from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

EVERY_SECONDS = 30.0


def fmt_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class Progress:
    """Throttled progress lines of a loop of ``total`` items.

    Args:
        total: number of items (steps, chunks) of the whole loop.
        label: shown in brackets at the start of each line.
        every_seconds: at most one line per this many seconds (0 = a line per update); the first
            and the last item always print.
        unit: the item's name in the line (``step``, ``chunk``).
        initial: items already done before this process started (a resumed run): the rate and
            the ETA use only the items done here.
        stream: where to print (default: ``sys.stdout`` at print time).
        clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(self, total: int, label: str, every_seconds: float = EVERY_SECONDS, unit: str = "step",
                 initial: int = 0, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.label, self.every, self.unit = int(total), label, float(every_seconds), unit
        self.initial = self.done = int(initial)
        self.stream, self.clock = stream, clock
        self.t0 = clock()
        self._last_print: float | None = None

    def line(self, **info: Any) -> str:
        """The current progress line (without printing it)."""
        elapsed = self.clock() - self.t0
        n_here = self.done - self.initial
        pct = f" ({100 * self.done / self.total:.0f}%)" if self.total > 0 else ""
        parts = [f"[{self.label}] {self.unit} {self.done}/{self.total}{pct}"]
        if n_here > 0:
            per = elapsed / n_here
            parts.append(f"{per:.1f} s/{self.unit}" if per >= 1 or per == 0 else f"{1 / per:.1f} {self.unit}s/s")
        parts += [f"{k.replace('_', ' ')} {_fmt_value(v)}" for k, v in info.items()]
        parts.append(f"elapsed {fmt_duration(elapsed)}")
        if 0 < n_here and self.done < self.total:
            parts.append(f"ETA {fmt_duration(elapsed / n_here * (self.total - self.done))}")
        return " | ".join(parts)

    def update(self, done: int | None = None, **info: Any) -> str | None:
        """Record progress (``done``: items done so far; default one more) and print a line if due.

        Keyword values (``reward=0.81, KL=0.03``) are shown in the line. Returns the printed line,
        or None when it was not yet time to print.
        """
        self.done = self.done + 1 if done is None else int(done)
        now = self.clock()
        due = (self._last_print is None or self.done >= self.total
               or now - self._last_print >= self.every)
        if not due:
            return None
        self._last_print = now
        text = self.line(**info)
        emit(text, self.stream)
        return text


def emit(text: str, stream: TextIO | None = None) -> None:
    """Print one line and flush (so it leaves a worker process at once)."""
    out = stream if stream is not None else sys.stdout
    out.write(text + "\n")
    out.flush()


class Heartbeat:
    """Print ``status()`` whenever ``every_seconds`` (at most) passed without any output (a daemon thread).

    Call :meth:`touch` whenever something else was printed; the heartbeat then stays quiet, so a
    step that reports its own progress is not doubled. Use as a context manager.
    """

    def __init__(self, status: Callable[[], str], every_seconds: float = EVERY_SECONDS,
                 stream: TextIO | None = None, lock: threading.Lock | None = None) -> None:
        self.status, self.every, self.stream = status, float(every_seconds), stream
        self.lock = lock or threading.Lock()
        self.last = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fairl-heartbeat", daemon=True)

    def touch(self) -> None:
        self.last = time.monotonic()

    def _run(self) -> None:
        poll = min(1.0, self.every / 4)
        while not self._stop.wait(poll):
            if time.monotonic() - self.last >= self.every - poll:  # checked every poll s: never later than every
                with self.lock:
                    emit(self.status(), self.stream)
                self.touch()

    def __enter__(self) -> Heartbeat:
        self.touch()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class PrefixedLines:
    """A write-only text stream: each complete line goes to ``stream`` as ``prefix + line``, flushed.

    A partial line waits for its newline (or :meth:`flush_partial`). A carriage return inside a
    line (a progress bar redrawn in place) keeps only the text after the last one, as a terminal
    would show it. ``on_write`` is called after each line written (a heartbeat's ``touch``).
    """

    def __init__(self, stream: TextIO, prefix: str, on_write: Callable[[], None] | None = None,
                 lock: threading.Lock | None = None) -> None:
        self.stream, self.prefix, self.on_write = stream, prefix, on_write
        self.lock = lock or threading.Lock()
        self._partial = ""

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._write_line(line)
        return len(text)

    def _write_line(self, line: str) -> None:
        line = line.rstrip("\r").rsplit("\r", 1)[-1]
        with self.lock:
            self.stream.write(f"{self.prefix}{line}\n")
            self.stream.flush()
        if self.on_write is not None:
            self.on_write()

    def flush_partial(self) -> None:
        """Write a pending partial line (at the end of the output)."""
        if self._partial:
            self._write_line(self._partial)
            self._partial = ""

    def flush(self) -> None:
        self.stream.flush()
