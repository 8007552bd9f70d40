"""Progress display for the CLI: a bar over experiences and epochs on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any

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


def make_reporter(quiet: bool) -> Reporter:
    if quiet:
        return QuietReporter()
    return BarReporter() if sys.stderr.isatty() else LineReporter()
