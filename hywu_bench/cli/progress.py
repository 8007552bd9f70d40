"""Progress display for the CLI: a bar over experiences and epochs (one run) or over runs (a sweep) on a
terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hywu_bench.runner import Reporter


class QuietReporter:
    def start(self, spec: Any, info: Any) -> None: ...
    def epoch(self, experience: int, epoch: int, n_epochs: int) -> None: ...
    def experience(self, experience: int, accuracies: list[float], seconds: float) -> None: ...
    def finish(self) -> None: ...


class LineReporter:
    """One line per experience on stderr, for logs and CI."""

    def start(self, spec: Any, info: Any) -> None:
        self.n = info.n_experiences
        print(f"{spec.run_name} on {info.name} (seed {spec.seed}): {self.n} experiences, "
              f"{spec.epochs} epochs each", file=sys.stderr, flush=True)

    def epoch(self, experience: int, epoch: int, n_epochs: int) -> None: ...

    def experience(self, experience: int, accuracies: list[float], seconds: float) -> None:
        accs = " ".join("  -  " if a != a else f"{a:.3f}" for a in accuracies)
        print(f"  experience {experience + 1}/{self.n} done in {seconds:.1f}s  accuracy: {accs}",
              file=sys.stderr, flush=True)

    def finish(self) -> None: ...


class BarReporter:
    """A rich progress bar: one task over experiences, one over the current experience's epochs."""

    def start(self, spec: Any, info: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), transient=True)
        self.progress.start()
        self.n = info.n_experiences
        self.stream = self.progress.add_task(f"{spec.run_name} on {info.name}", total=self.n)
        self.epochs = self.progress.add_task("  epochs", total=spec.epochs)
        self.t0 = time.perf_counter()

    def epoch(self, experience: int, epoch: int, n_epochs: int) -> None:
        self.progress.update(self.epochs, completed=epoch, total=n_epochs,
                             description=f"  experience {experience + 1}: epochs")

    def experience(self, experience: int, accuracies: list[float], seconds: float) -> None:
        accs = " ".join("  -  " if a != a else f"{a:.3f}" for a in accuracies)
        self.progress.console.print(f"  experience {experience + 1}/{self.n} ({seconds:.1f}s)  accuracy: {accs}")
        self.progress.update(self.stream, advance=1)
        self.progress.update(self.epochs, completed=0)

    def finish(self) -> None:
        self.progress.stop()


def make_reporter(quiet: bool) -> "Reporter":
    if quiet:
        return QuietReporter()
    return BarReporter() if sys.stderr.isatty() else LineReporter()


class GridProgress:
    """Overall progress over runs: a rich bar on a terminal, one plain line per event otherwise."""

    def __init__(self, total: int, quiet: bool = False):
        self.total, self.done, self.quiet = total, 0, quiet
        self.bar = None
        if not quiet and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), transient=True)
            self.task = self.bar.add_task("runs", total=total)
            self.bar.start()

    def _line(self, text: str) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.console.print(text)
        else:
            print(text, file=sys.stderr, flush=True)

    def started(self, spec: Any) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=f"running {spec.run_name} seed {spec.seed} on {spec.scenario}")

    def finished(self, outcome: Any) -> None:
        self.done += 1
        spec = outcome.spec
        what = f"{spec.run_name} seed {spec.seed} on {spec.scenario}"
        if not outcome.ok:
            status = f"FAILED: {outcome.error}"
        elif outcome.reused:
            status = "skipped (already complete)"
        else:
            status = f"done in {outcome.seconds:.1f}s"
        self._line(f"[{self.done}/{self.total}] {what}: {status}")
        if self.bar is not None:
            self.bar.update(self.task, advance=1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
