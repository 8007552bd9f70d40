"""Avalanche's own loggers on a run: `--logger text|csv|tensorboard|wandb` (repeatable).

A run is normally silent (the runner collects its accuracy matrix itself, `training.quiet_evaluator`).
With loggers, the strategy's evaluator is replaced, once the run folder is ready, by Avalanche's
`EvaluationPlugin` with the harness's metrics: accuracy per test experience and over the stream, the
loss (per training epoch, per experience and over the stream), the training accuracy per epoch, and
the strategy's regulariser per epoch where it reports one (`strategy.last_regulariser`, as HY-WU does).
They write under the run folder:

| logger      | where                                   | needs                   |
|-------------|-----------------------------------------|-------------------------|
| text        | `<run>/logs/log.txt`                    |                         |
| csv         | `<run>/logs/csv/` (Avalanche's tables)  |                         |
| tensorboard | `<run>/logs/tensorboard/` (event files) | `pip install tensorboard` |
| wandb       | `<run>/logs/wandb/`, offline unless `WANDB_MODE` is set | `pip install wandb` |

Loggers are not part of a run's identity (`RunSpec`): a run made with them is the same run, reused as
any other. A resumed run appends to its logs.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from hywu_bench.errors import UserError

LOGGERS = ("text", "csv", "tensorboard", "wandb")
_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}


def check(names: Iterable[str]) -> tuple[str, ...]:
    """The requested loggers, validated (each once, in the order given), before anything runs."""
    out: list[str] = []
    for name in names:
        if name not in LOGGERS:
            raise UserError(f"unknown logger '{name}'; use one of {', '.join(LOGGERS)} (--logger is repeatable).")
        package = _PACKAGES.get(name)
        if package and importlib.util.find_spec(package) is None:
            raise UserError(f"--logger {name} needs the '{package}' package, which is not installed: "
                            f"pip install {package}")
        if name not in out:
            out.append(name)
    return tuple(out)


@dataclass
class Attached:
    loggers: list[Any] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for close in self.closers:
            close()


def attach(strategy: Any, names: Iterable[str], run_path: Path, spec: Any) -> Attached:
    """Replace `strategy`'s evaluator by one with the harness's metrics and the `names` loggers."""
    from avalanche.evaluation.metrics import accuracy_metrics, loss_metrics
    from avalanche.training.plugins import EvaluationPlugin

    names = check(names)
    attached = Attached()
    if not names:
        return attached
    logs = Path(run_path) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for name in names:
        _MAKERS[name](logs, spec, attached)
    evaluator = EvaluationPlugin(
        accuracy_metrics(epoch=True, experience=True, stream=True),
        loss_metrics(epoch=True, experience=True, stream=True),
        RegulariserMetric(),
        loggers=attached.loggers, strict_checks=False,
    )
    index = next(i for i, p in enumerate(strategy.plugins) if p is strategy.evaluator)
    strategy.plugins[index] = strategy.evaluator = evaluator
    return attached


def _text(logs: Path, spec: Any, attached: Attached) -> None:
    from avalanche.logging import TextLogger

    file = open(logs / "log.txt", "a")
    attached.loggers.append(TextLogger(file))
    attached.closers.append(file.close)


def _csv(logs: Path, spec: Any, attached: Attached) -> None:
    from avalanche.logging import CSVLogger

    logger = CSVLogger(log_folder=str(logs / "csv"))
    attached.loggers.append(logger)
    attached.closers.append(logger.close)


def _tensorboard(logs: Path, spec: Any, attached: Attached) -> None:
    from avalanche.logging import TensorboardLogger

    logger = TensorboardLogger(tb_log_dir=logs / "tensorboard")
    attached.loggers.append(logger)
    attached.closers.append(logger.writer.close)


def _wandb(logs: Path, spec: Any, attached: Attached) -> None:
    from avalanche.logging import WandBLogger

    (logs / "wandb").mkdir(exist_ok=True)
    # Offline unless the user chose a mode: a run never needs the network, and can be synced later. The id
    # is ours: Avalanche 0.6.0 asks `wandb.util.generate_id`, which recent wandb releases no longer have.
    params = {"id": uuid.uuid4().hex[:12], **({} if os.environ.get("WANDB_MODE") else {"mode": "offline"})}
    logger = WandBLogger(project_name="hywu-bench", run_name=f"{spec.scenario_label}/{spec.run_name}/seed{spec.seed}",
                         dir=str(logs / "wandb"), config=spec.to_dict(), params=params)
    if not hasattr(logger.wandb, "viz"):  # wandb >= 0.19 moved CustomChart, which Avalanche 0.6.0 checks for
        logger.wandb = _WandbWithViz(logger.wandb)
    attached.loggers.append(logger)
    attached.closers.append(logger.wandb.finish)


class _WandbWithViz:
    """The wandb module as Avalanche 0.6.0's WandBLogger reads it: `wandb.viz.CustomChart` is
    `wandb.plot.CustomChart` in recent releases. Everything else is the module itself."""

    def __init__(self, wandb: Any):
        from types import SimpleNamespace

        self._wandb = wandb
        self.viz = SimpleNamespace(CustomChart=wandb.plot.CustomChart)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wandb, name)


_MAKERS = {"text": _text, "csv": _csv, "tensorboard": _tensorboard, "wandb": _wandb}


@functools.cache
def _regulariser_metric_class() -> type:
    from avalanche.evaluation import GenericPluginMetric
    from avalanche.evaluation.metrics import Mean

    class Regulariser(GenericPluginMetric):
        """The mean of `strategy.last_regulariser` over a training epoch (nothing for strategies without one)."""

        def __init__(self) -> None:
            super().__init__(Mean(), reset_at="epoch", emit_at="epoch", mode="train")
            self.seen = False

        def update(self, strategy: Any) -> None:
            value = getattr(strategy, "last_regulariser", None)
            if value is not None:
                self.seen = True
                self._metric.update(float(value), 1)

        def _package_result(self, strategy: Any) -> Any:
            return super()._package_result(strategy) if self.seen else None

        def __str__(self) -> str:
            return "Regulariser_Epoch"

    return Regulariser


def RegulariserMetric() -> Any:  # noqa: N802  (a metric, built where Avalanche is imported)
    return _regulariser_metric_class()()
