"""The training side shared by every strategy: the harness template and the runner's plugins.

`HarnessTemplate` is Avalanche's `SupervisedTemplate` with the tensor data path (`hywu_bench.data`) and
two additions every strategy answers: `memory_bytes()` (what it keeps beyond the base model, by kind:
`hywu_bench.memory.MemoryBytes`; `stored_memory_bytes()` is its stored total) and `mb_condition` (the
minibatch's condition tokens, or None). Baselines are this template plus Avalanche's
own plugins; HY-WU and the LoRA family subclass it.

`TrainingSetup` carries what a strategy builder needs from the run: resolved hyperparameters, device,
and the runner's plugins (task-label masking, accuracy collection, divergence check, progress).
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
from avalanche.core import SupervisedPlugin
from avalanche.training.plugins import EvaluationPlugin
from avalanche.training.templates import SupervisedTemplate
from torch import Tensor, nn

from hywu_bench.config import RunSpec
from hywu_bench.data import ScenarioInfo, TensorLoader, dataset_tensors
from hywu_bench.errors import RunDiverged
from hywu_bench.memory import KINDS, MemoryBytes


class TensorLoadersMixin:
    """Replace Avalanche's per-sample loaders by `TensorLoader` when the data is plain tensors.

    `data_path = "avalanche"` (the runner sets it from RunSpec.data_path; nothing else reads that field)
    keeps Avalanche's own loaders: a check that the fast path changes no result beyond minibatch order.
    """

    train_mb_size: int
    eval_mb_size: int
    data_path: str = "tensor"

    def make_train_dataloader(self, num_workers=0, shuffle=True, pin_memory=None, persistent_workers=False,
                              drop_last=False, **kwargs):
        tensors = dataset_tensors(self.adapted_dataset) if self.data_path == "tensor" else None
        if tensors is None:
            return super().make_train_dataloader(num_workers, shuffle, pin_memory, persistent_workers,
                                                 drop_last, **kwargs)
        self.dataloader = TensorLoader(tensors, self.train_mb_size, shuffle=shuffle, drop_last=drop_last)

    def make_eval_dataloader(self, num_workers=0, shuffle=False, pin_memory=None, persistent_workers=False,
                             **kwargs):
        tensors = dataset_tensors(self.adapted_dataset) if self.data_path == "tensor" else None
        if tensors is None:
            return super().make_eval_dataloader(num_workers, shuffle, pin_memory, persistent_workers, **kwargs)
        self.dataloader = TensorLoader(tensors, self.eval_mb_size, shuffle=False)

    @property
    def mb_condition(self) -> Tensor | None:
        """The minibatch's condition tokens (B, condition_dim) on streams that have them."""
        return self.mbatch[2] if self.mbatch is not None and len(self.mbatch) == 4 else None


# What Avalanche's plugins keep, by attribute, where the default kind is wrong (`plugin_memory`); None marks
# scratch recomputed at every step from what is kept (A-GEM's reference gradient, GEM's gradient matrix),
# not memory of the past. A plugin of one's own declares the same as a class attribute `memory_kinds`.
PLUGIN_MEMORY_KINDS: dict[str, dict[str, str | None]] = {
    "AGEMPlugin": {"reference_gradients": None, "buffer_dataloader": None, "buffer_dliter": None},
    "GEMPlugin": {"memory_x": "raw_inputs", "memory_y": "raw_inputs", "memory_tid": None, "G": None},
}
_DATASET_LABELS = ("targets", "targets_task_labels")  # data attributes counted with the inputs (or not at all)


def tensor_bytes(tensors: Iterable[Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def module_bytes(module: nn.Module) -> int:
    """Parameters and buffers of a module, each counted once."""
    return tensor_bytes({id(t): t for t in [*module.parameters(), *module.buffers()]}.values())


def plugin_memory(plugin: Any, live: nn.Module | None = None) -> MemoryBytes:
    """What a plugin keeps between experiences, by kind. Avalanche datasets (replay buffers, A-GEM's
    per-experience buffers): raw_inputs (inputs, labels, condition tokens; not task labels), and their
    extra tensor attributes (DER's logits): derived; anything inside a storage policy (its sampling
    weights): raw_inputs; other tensors and copied models (EWC's importances and old parameters, SI's,
    LwF's previous model): model_state. `PLUGIN_MEMORY_KINDS` or `memory_kinds` override by attribute.
    Tensors of the `live` model (the one being trained, which some plugins hold) are not counted."""
    from avalanche.training.storage_policy import ExemplarsBuffer

    counts = {k: 0 for k in KINDS[:3]}
    seen: set[int] = set()
    alive: list[Any] = []  # what was visited stays referenced, so no id is reused by a later temporary
    if live is not None:
        seen.update(id(t) for t in [*live.parameters(), *live.buffers()])
        seen.add(id(live))

    def add(t: Tensor, kind: str) -> None:
        if id(t) not in seen:
            seen.add(id(t))
            alive.append(t)
            counts[kind] += t.numel() * t.element_size()

    def visit(obj: Any, kind: str | None, depth: int = 0) -> None:
        if depth > 5 or obj is None or id(obj) in seen:
            return
        alive.append(obj)
        if isinstance(obj, Tensor):
            add(obj, kind or "model_state")
            return
        seen.add(id(obj))
        if isinstance(obj, nn.Module):
            for t in [*obj.parameters(), *obj.buffers()]:
                add(t, kind or "model_state")
        elif isinstance(obj, dict):
            for v in obj.values():
                visit(v, kind, depth + 1)
        elif isinstance(obj, (list, tuple, set)):
            for v in obj:
                visit(v, kind, depth + 1)
        elif hasattr(obj, "_flat_data"):
            add_dataset(obj)
        elif hasattr(obj, "__dict__") and not (inspect.isroutine(obj) or isinstance(obj, type)):
            inner = "raw_inputs" if isinstance(obj, ExemplarsBuffer) else kind
            for name, v in vars(obj).items():
                if name != "strategy":
                    visit(v, inner, depth + 1)

    def add_dataset(dataset: Any) -> None:
        tensors = dataset_tensors(dataset)
        if tensors is None and len(dataset):  # not plain tensors (feature replay's features): per item
            item = [t for t in dataset[0][:-1] if isinstance(t, Tensor)]  # not the task label
            counts["raw_inputs"] += len(dataset) * sum(t.numel() * t.element_size() for t in item)
        for t in (tensors or [])[:-1]:  # inputs, labels, conditions; not the task labels
            add(t, "raw_inputs")
        for name, attribute in getattr(dataset, "_data_attributes", {}).items():
            if name not in _DATASET_LABELS:
                for i in range(len(attribute)):
                    value = attribute[i]
                    if isinstance(value, Tensor):
                        counts["derived"] += value.numel() * value.element_size()

    kinds = {**PLUGIN_MEMORY_KINDS.get(type(plugin).__name__, {}), **getattr(plugin, "memory_kinds", {})}
    for name, value in vars(plugin).items():
        if name != "strategy" and not (name in kinds and kinds[name] is None):
            visit(value, kinds.get(name))
    return MemoryBytes(**counts)


def plugin_memory_bytes(plugin: Any) -> int:
    """Bytes a plugin keeps between experiences (raw inputs, derived and model state together)."""
    return plugin_memory(plugin).stored


class CheckpointMixin:
    """Plain-state checkpointing of a template's plugins; subclasses add what they keep themselves.

    `resume_refusal`: None when the checkpoint captures everything the strategy keeps (its resume is
    exact), else what it cannot save; the runner then refuses `--resume` with that line (`checkpoint.restore`).
    `relearn_first`: the strategy trains experience 0 for its epochs even after the shared warm start (its
    memory fills during training iterations, or its model is not the warm-started backbone).
    """

    plugins: list[Any]
    resume_refusal: str | None = None
    relearn_first: bool = False
    capture_model_fields: bool = False  # checkpoint the model's Python fields too (`plain.to_plain` of a module)

    def strategy_state(self) -> dict[str, Any]:
        from hywu_bench.checkpoint import plugin_state

        return {"plugins": [plugin_state(p, self) for p in self.plugins]}

    def load_strategy_state(self, state: dict[str, Any]) -> None:
        from hywu_bench.checkpoint import load_plugin_state

        if len(state["plugins"]) != len(self.plugins):
            raise ValueError("checkpoint was written by a strategy with different plugins")
        for plugin, plugin_state in zip(self.plugins, state["plugins"]):
            load_plugin_state(plugin, plugin_state, self)

    def memory_bytes(self) -> MemoryBytes:
        """What the method keeps beyond the base model, by kind; a strategy adds what it keeps itself."""
        live, evaluator = getattr(self, "model", None), getattr(self, "evaluator", None)
        return sum((plugin_memory(p, live) for p in self.plugins
                    if not isinstance(p, _RunnerPlugin) and p is not evaluator), MemoryBytes())

    def stored_memory_bytes(self) -> int:
        """Raw inputs + derived + model state: what the method keeps for the past (budgets limit this)."""
        return self.memory_bytes().stored


class PrecisionMixin:
    """The one owner of mixed precision: with `precision = "bf16"`, every forward pass of training and
    evaluation runs under `torch.autocast(device_type, torch.bfloat16)`, on CUDA and on CPU alike.

    Autocast is entered after the `before_forward` plugins and left before the `after_forward` ones,
    around `self.forward()`, whatever a subclass does there; the output is returned to float32, so losses,
    regularisers and plugins work in float32 (PyTorch's advice: autocast the forward pass only, not the
    backward). An epoch that ends with an exception leaves autocast all the same.
    """

    precision: str = "fp32"
    device: torch.device
    mb_output: Tensor

    def _autocast_enter(self) -> None:
        if self.precision != "bf16":
            return
        self._autocast = torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        self._autocast.__enter__()

    def _autocast_exit(self) -> None:
        context = self.__dict__.pop("_autocast", None)
        if context is not None:
            context.__exit__(None, None, None)
            if isinstance(self.mb_output, Tensor) and self.mb_output.is_floating_point():
                self.mb_output = self.mb_output.float()

    def _before_forward(self, **kwargs: Any) -> None:
        super()._before_forward(**kwargs)  # type: ignore[misc]
        self._autocast_enter()

    def _after_forward(self, **kwargs: Any) -> None:
        self._autocast_exit()
        super()._after_forward(**kwargs)  # type: ignore[misc]

    def _before_eval_forward(self, **kwargs: Any) -> None:
        super()._before_eval_forward(**kwargs)  # type: ignore[misc]
        self._autocast_enter()

    def _after_eval_forward(self, **kwargs: Any) -> None:
        self._autocast_exit()
        super()._after_eval_forward(**kwargs)  # type: ignore[misc]

    def training_epoch(self, **kwargs: Any) -> None:
        try:
            super().training_epoch(**kwargs)  # type: ignore[misc]
        finally:
            self._autocast_exit()

    def eval_epoch(self, **kwargs: Any) -> None:
        try:
            super().eval_epoch(**kwargs)  # type: ignore[misc]
        finally:
            self._autocast_exit()


class HarnessTemplate(PrecisionMixin, CheckpointMixin, TensorLoadersMixin, SupervisedTemplate):
    """SupervisedTemplate on the tensor data path, reporting its stored memory, checkpointable, with its
    precision owned by `PrecisionMixin`."""


# ---------------------------------------------------------------------------------------------------
# The runner's plugins.


class _RunnerPlugin(SupervisedPlugin):
    """Marker: the harness's own plugins, not part of any method's memory nor of a checkpoint."""

    keeps_nothing = True


class TaskMaskPlugin(_RunnerPlugin):
    """Task-incremental setting: the task label selects its classes (a multi-head model on one head).

    Logits of classes outside the minibatch's task are masked out in training and evaluation. Only
    task-incremental streams get this plugin; the task label is then used at test time by design.
    """

    def __init__(self, info: ScenarioInfo):
        super().__init__()
        mask = torch.zeros(info.n_experiences, info.n_classes, dtype=torch.bool)
        for e in info.experiences:
            mask[e.index, list(e.classes)] = True
        self.allowed = mask  # (T, n_classes)

    def _mask(self, strategy: Any) -> None:
        allowed = self.allowed.to(strategy.mb_output.device)[strategy.mb_task_id]  # (B, n_classes)
        strategy.mb_output = strategy.mb_output.masked_fill(~allowed, -1e4)

    def after_forward(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        self._mask(strategy)

    def after_eval_forward(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        self._mask(strategy)


class AccuracyCollector(_RunnerPlugin):
    """Counts correct predictions per test experience during `strategy.eval(stream)`."""

    def __init__(self) -> None:
        super().__init__()
        self.correct: dict[int, int] = {}
        self.total: dict[int, int] = {}

    def reset(self) -> None:
        self.correct.clear()
        self.total.clear()

    def after_eval_iteration(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        j = strategy.experience.current_experience
        hits = int((strategy.mb_output.argmax(1) == strategy.mb_y).sum())
        self.correct[j] = self.correct.get(j, 0) + hits
        self.total[j] = self.total.get(j, 0) + int(strategy.mb_y.shape[0])

    def accuracies(self, n: int) -> list[float]:
        return [self.correct[j] / self.total[j] if self.total.get(j) else math.nan for j in range(n)]


class ContinualEvaluation(AccuracyCollector):
    """Continual evaluation (De Lange et al., ICLR 2023): every `every` training iterations, the accuracy on
    the test experiences seen so far (0 to the one being trained), for the stability gap's curve.

    It runs the strategy's own `eval` on those experiences, so task masks, condition tokens and any
    strategy's eval-time forward apply exactly as in the evaluation that fills R. Training is left as it
    was: Avalanche's `eval` restores the experience, datasets, loader and every module's train/eval mode
    and runs without gradients; this plugin also restores the minibatch, its output and loss, the clock's
    counters and the torch RNG state, so a run with it gives the same accuracy matrix as one without.

    `rows` holds (iteration, experience being trained, accuracies (T,), NaN after that experience);
    `iteration` counts this run's training iterations (the warm start's are not counted).
    """

    def __init__(self, test_stream: Any, every: int):
        super().__init__()
        self.test_stream, self.every = test_stream, every
        self.iteration = 0
        self.rows: list[tuple[int, int, list[float]]] = []
        self.seconds = 0.0  # spent evaluating
        self._active = False

    def after_training_iteration(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        self.iteration += 1
        if self.every > 0 and self.iteration % self.every == 0:
            self.evaluate(strategy, strategy.experience.current_experience)

    def after_eval_iteration(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        if self._active:  # only its own evaluations, never the runner's
            super().after_eval_iteration(strategy)

    def evaluate(self, strategy: Any, experience: int) -> None:
        saved = {name: getattr(strategy, name, None) for name in ("mbatch", "mb_output", "loss")}
        clock = dict(vars(strategy.clock))
        devices = [strategy.device] if torch.device(strategy.device).type == "cuda" else []
        t0 = time.perf_counter()
        self.reset()
        self._active = True
        try:
            with torch.random.fork_rng(devices=devices):
                strategy.eval(self.test_stream[:experience + 1])
        finally:
            self._active = False
            for name, value in saved.items():
                setattr(strategy, name, value)
            vars(strategy.clock).update(clock)
        self.seconds += time.perf_counter() - t0
        self.add(self.iteration, experience, self.accuracies(experience + 1))

    def add(self, iteration: int, experience: int, accuracies: list[float]) -> None:
        """A row of the curve: accuracies on experiences 0..experience; a row at the same iteration (an
        evaluation on the same weights) is replaced."""
        T = len(self.test_stream)
        row = [float(a) for a in accuracies[:experience + 1]] + [math.nan] * (T - experience - 1)
        if self.rows and self.rows[-1][0] == iteration:
            self.rows.pop()
        self.rows.append((iteration, experience, row))

    def state(self) -> dict[str, Any]:
        """Plain state for the runner's checkpoint (its `progress`), so the curve survives a resume."""
        return {"iteration": self.iteration, "seconds": self.seconds,
                "rows": [[i, k, list(acc)] for i, k, acc in self.rows]}

    def load_state(self, state: dict[str, Any] | None) -> None:
        if state:
            self.iteration, self.seconds = int(state["iteration"]), float(state["seconds"])
            self.rows = [(int(i), int(k), [float(a) for a in acc]) for i, k, acc in state["rows"]]


class DivergencePlugin(_RunnerPlugin):
    """Stops a run whose loss turns NaN or infinite, naming the experience, epoch and step."""

    def __init__(self) -> None:
        super().__init__()
        self.step = 0

    def before_training_epoch(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        self.step = 0

    def before_backward(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        if not torch.isfinite(strategy.loss).all():
            exp = strategy.experience.current_experience
            epoch = strategy.clock.train_exp_epochs
            raise RunDiverged(
                f"loss is {float(strategy.loss.detach().reshape(-1)[0])} in experience {exp}, epoch {epoch}, "
                f"step {self.step}; lower the learning rate (--lr) or check the data."
            )
        self.step += 1


class ProgressPlugin(_RunnerPlugin):
    """Calls `on_epoch(experience, epoch, n_epochs)` after every training epoch."""

    def __init__(self, on_epoch: Callable[[int, int, int], None]):
        super().__init__()
        self.on_epoch = on_epoch

    def after_training_epoch(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        self.on_epoch(strategy.experience.current_experience, strategy.clock.train_exp_epochs + 1,
                      strategy.train_epochs)


class SilentEvaluation(EvaluationPlugin):
    """No metrics and no loggers: the runner collects the accuracy matrix itself (AccuracyCollector).

    Avalanche's EvaluationPlugin copies the experience on every callback even with no metrics; with
    nothing to compute, this one returns at once.
    """

    def _update_metrics_and_loggers(self, strategy: Any, callback: str) -> list:
        return []


def quiet_evaluator() -> EvaluationPlugin:
    return SilentEvaluation(loggers=[])


@dataclass
class TrainingSetup:
    """What a strategy builder gets from the run. Hyperparameters are resolved (no None)."""

    spec: RunSpec
    info: ScenarioInfo
    device: torch.device
    epochs: int
    batch_size: int
    lr: float
    plugins: list[SupervisedPlugin] = field(default_factory=list)

    @property
    def memory_budget(self) -> int | None:
        """Bytes the method's stored memory is sized to (its option is already sized in `spec`), or None."""
        return self.spec.memory_budget

    def optimizer(self, params: Iterable[nn.Parameter], lr: float | None = None) -> torch.optim.Optimizer:
        params = [p for p in params if p.requires_grad]
        lr = lr or self.lr
        if self.spec.optimizer == "adam":
            return torch.optim.Adam(params, lr=lr)
        return torch.optim.SGD(params, lr=lr, momentum=self.spec.momentum)

    def template_kwargs(self, plugins: Iterable[SupervisedPlugin] = ()) -> dict[str, Any]:
        """Keyword arguments for any Avalanche template; the method's own plugins come first."""
        return dict(
            criterion=nn.CrossEntropyLoss(),
            train_mb_size=self.batch_size,
            train_epochs=self.epochs,
            eval_mb_size=self.spec.eval_batch_size,
            device=self.device,
            plugins=[*plugins, *self.plugins],
            evaluator=quiet_evaluator(),
        )
