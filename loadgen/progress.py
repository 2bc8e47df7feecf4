"""What a person sees while a run goes: its progress, and why requests are refused.

Everything here goes to stderr, so that stdout carries the report alone, as it always has. On a
terminal (``--progress auto``, the default) a rich progress bar shows the elapsed and planned
seconds, the requests so far, the current rate, the errors and the p99 so far, redrawn twice a
second. Anywhere else (a pipe, CI, a log file) one plain line every ``LINE_INTERVAL_S`` seconds
says the same: a long run in a log shows it is alive, a short one adds nothing.
``--progress none`` shows no progress at all.

Whatever the mode, requests refused (401, 403, 429) are said once per kind and status, when
first seen (warm-up included), with the service's reason and what to do: a run of 401s is
otherwise just a count of errors at the end. Without a key, ranker answers 401 to the first
submits of an address and then 429 (too many failed authentications): both point at the key.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from loadgen.stats import Snapshot

MODES = ("auto", "live", "lines", "none")
#: Seconds between two plain progress lines (``lines``): a log line at most this often.
LINE_INTERVAL_S = 5.0


def refusal_hint(kind: str, status: int, reason: str, has_key: bool) -> str:
    """One line on ``kind`` requests refused with ``status``: the service's ``reason`` (its
    problem detail, maybe empty) and, when the key is the cause, what to do."""
    said = f"loadgen: {kind} refused {status}" + (f" ({reason})" if reason else "")
    if not has_key and status in (401, 429):
        # Without a key, a 429 is the address's budget of failed authentications (writes) or
        # of reads without a key: a key is the way out of both.
        return f"{said}: pass --api-key or set RANKER_API_KEY (`make run` prints a key)"
    if status == 401:
        return f"{said}: check the key of --api-key or RANKER_API_KEY"
    return said  # 403 (a read key writing, a banned player) and 429: the reason says it


class Display:
    """The watch of a run (``run_load(config, watch=display)``), used as a context manager.

    ``mode`` is one of ``MODES``; ``auto`` is ``live`` when ``console`` is an interactive
    terminal, else ``lines``. ``has_key`` (whether the run sends a key) picks the advice of a
    hint.
    """

    def __init__(
        self, console: Console, mode: str, *, warmup_s: float, duration_s: float, has_key: bool
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown progress mode {mode!r}; one of {', '.join(MODES)}")
        if mode == "auto":
            mode = "live" if console.is_interactive else "lines"
        self.console = console
        self.mode = mode
        self.warmup_s = warmup_s
        self.planned_s = warmup_s + duration_s
        self.has_key = has_key
        self.told: set[tuple[str, int]] = set()
        self.shown = (warmup_s, 0)  # (elapsed_s, count) when progress was last shown
        self.next_line_s = LINE_INTERVAL_S
        self.bar: Progress | None = None
        self.task: TaskID | None = None

    def __enter__(self) -> Display:
        if self.mode == "live":
            self.bar = Progress(
                TextColumn("{task.description:<9}"),
                BarColumn(),
                TextColumn("{task.completed:.1f}/{task.total:g} s"),
                TextColumn("{task.fields[stats]}", markup=False),
                console=self.console,
                auto_refresh=False,  # redrawn by each snapshot: no thread beside the event loop
                redirect_stdout=False,  # stdout is the report's
            )
            self.task = self.bar.add_task("warm-up", total=self.planned_s, stats="")
            self.bar.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.bar is not None:
            self.bar.stop()  # the last state stays on screen, above the report

    def __call__(self, snapshot: Snapshot) -> None:
        """Show ``snapshot``: the hints it brings, then the progress."""
        for (kind, status), reason in sorted(snapshot.refused.items()):
            if (kind, status) not in self.told:
                self.told.add((kind, status))
                self.say(refusal_hint(kind, status, reason, self.has_key))
        if self.bar is not None and self.task is not None:
            self.redraw(self.bar, self.task, snapshot)
        elif self.mode == "lines" and not snapshot.final and snapshot.elapsed_s >= self.next_line_s:
            while self.next_line_s <= snapshot.elapsed_s:  # one line, however late the snapshot
                self.next_line_s += LINE_INTERVAL_S
            done = f"{snapshot.elapsed_s:.0f}/{self.planned_s:g} s"
            self.say(f"loadgen: {done}: {self.stats(snapshot)}")

    def redraw(self, bar: Progress, task: TaskID, snapshot: Snapshot) -> None:
        """The progress bar at ``snapshot``."""
        if snapshot.final:
            phase, completed = "done", self.planned_s
        else:
            phase = "measuring" if snapshot.elapsed_s >= self.warmup_s else "warm-up"
            completed = min(snapshot.elapsed_s, self.planned_s)
        bar.update(task, description=phase, completed=completed, stats=self.stats(snapshot))
        bar.refresh()

    def say(self, text: str) -> None:
        """One line on the console (above the bar, when there is one)."""
        # As it is: no markup, no highlighted numbers, no wrapping of a long line in a log.
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def stats(self, snapshot: Snapshot) -> str:
        """``1,200 requests, 401 req/s, 0 errors, p99 3.21 ms``: the rate since last shown, or
        over the whole window in the final snapshot."""
        if snapshot.elapsed_s < self.warmup_s:
            return "warming up: nothing recorded yet"
        since_s, since_count = (self.warmup_s, 0) if snapshot.final else self.shown
        span_s = snapshot.elapsed_s - since_s
        rate = (snapshot.count - since_count) / span_s if span_s > 0 else 0.0
        self.shown = (snapshot.elapsed_s, snapshot.count)
        dropped = f", {snapshot.dropped:,} dropped" if snapshot.dropped else ""
        return (
            f"{snapshot.count:,} requests, {rate:,.0f} req/s, {snapshot.failed:,} errors{dropped}, "
            f"p99 {snapshot.p99_ms:.2f} ms"
        )
