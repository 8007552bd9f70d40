"""What Avalanche's class-incremental benchmarks tell a strategy about an experience, for the harness's
streams (built from tensors with `benchmark_from_datasets`, whose experiences carry only a dataset).

iCaRL reads `experience.benchmark.n_classes_per_exp` and `.classes_order`; SCR, PNN and the multi-head
models read `experience.classes_in_this_experience` and `experience.task_labels`; BiC replaces
`experience.dataset` (its training part, without the samples it holds out). Every experience a zoo
strategy trains on or evaluates is a shallow copy that has these facts (from the run's ScenarioInfo) and
a settable dataset, so nothing a strategy does to it reaches the scenario the runner keeps.
"""

from __future__ import annotations

import copy
import functools
from types import SimpleNamespace
from typing import Any

from hywu_bench.data import ScenarioInfo


@functools.cache
def _settable(cls: type) -> type:
    def dataset(self: Any) -> Any:
        return self._dataset

    def set_dataset(self: Any, value: Any) -> None:
        self._dataset = value

    return type(f"Harness{cls.__name__}", (cls,), {"dataset": property(dataset, set_dataset),
                                                  "__module__": __name__})


def with_facts(experience: Any, info: ScenarioInfo) -> Any:
    index = experience.current_experience
    classes = [sorted(e.classes) for e in info.experiences]
    before = {c for group in classes[:index] for c in group}
    now = set(classes[index])
    exp = copy.copy(experience)
    if hasattr(type(exp), "dataset") and hasattr(exp, "_dataset"):
        exp.__class__ = _settable(type(experience))
    tasks = sorted(int(t) for t in exp.dataset.targets_task_labels.uniques)
    exp.task_labels = tasks
    if len(tasks) == 1:
        exp.task_label = tasks[0]
    exp.classes_in_this_experience = classes[index]
    exp.previous_classes = sorted(before)
    exp.classes_seen_so_far = sorted(before | now)
    exp.future_classes = sorted({c for group in classes for c in group} - before - now)
    exp.benchmark = SimpleNamespace(n_classes_per_exp=[len(g) for g in classes],
                                    classes_order=[c for g in classes for c in g], n_classes=info.n_classes)
    return exp


class ExperienceFactsMixin:
    """A template that sees every experience `with_facts` (set `scenario_info` before training)."""

    scenario_info: ScenarioInfo | None = None

    def _before_training_exp(self, **kwargs: Any) -> None:
        if self.scenario_info is not None:
            self.experience = with_facts(self.experience, self.scenario_info)
        super()._before_training_exp(**kwargs)

    def _before_eval_exp(self, **kwargs: Any) -> None:
        if self.scenario_info is not None:
            self.experience = with_facts(self.experience, self.scenario_info)
        super()._before_eval_exp(**kwargs)
