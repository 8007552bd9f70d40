"""One builder for every catalogue entry: Avalanche's class or plugin, on the harness's terms.

A plugin target runs on `HarnessTemplate` (the tensor data path, checkpointing, the runner's plugins),
as the classic baselines do. A strategy class runs as `Harness<Class>`: the class itself with the
harness's mixins in front (bf16 forward, checkpointing, the tensor data path unless the class makes its
own train loader). Its arguments are the options, the catalogue's fixed values ("@..." filled from the
run) and the template's keyword arguments it accepts. Avalanche's own complaints about the arguments
(its `assert`s included) become one line naming the strategy.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from avalanche.core import BasePlugin
from avalanche.training.templates import SupervisedTemplate
from torch import nn

from hywu_bench.errors import UserError
from hywu_bench.training import CheckpointMixin, HarnessTemplate, PrecisionMixin, TensorLoadersMixin, TrainingSetup
from strategies.zoo import models
from strategies.zoo.catalogue import Method, method
from strategies.zoo.facts import ExperienceFactsMixin
from strategies.zoo.generate import load_target
from strategies.zoo.state import ZooStateMixin

_DROP = "@drop"


def unavailable(model: nn.Module, setup: TrainingSetup, options: Any, *, name: str) -> Any:
    raise UserError(f"strategy '{name}' cannot run here: {method(name).unavailable}.")


def build(model: nn.Module, setup: TrainingSetup, options: Any, *, name: str) -> Any:
    m = method(name)
    if setup.info.condition_dim and not m.conditions:
        raise UserError(f"strategy '{name}' (Avalanche's {m.target.split(':')[1]}) reads minibatches as (x, y, task) "
                        f"and cannot take the condition tokens of '{setup.info.name}'; use a stream without them.")
    if setup.spec.precision == "bf16" and m.no_bf16:
        raise UserError(f"strategy '{name}' cannot run with precision=bf16: {m.no_bf16}; use precision=fp32.")
    target = load_target(m.target)
    args = _arguments(m, vars(options), model, setup)
    parts = models.adapt(m.model, model, setup, args)
    try:
        if issubclass(target, BasePlugin):
            plugin = target(**args)
            if m.memory_kinds:
                plugin.memory_kinds = dict(m.memory_kinds)
            strategy = ZooTemplate(model=parts["model"], optimizer=setup.optimizer(parts["model"].parameters()),
                                   **setup.template_kwargs([plugin]))
        else:
            trained = parts.get("model", model)
            kwargs = {**setup.template_kwargs(), "optimizer": setup.optimizer(trained.parameters()), **parts, **args}
            kwargs = {k: v for k, v in kwargs.items() if _accepts(target, k) and m.fixed.get(k) != _DROP}
            strategy = harness_class(target)(**kwargs)
    except (AssertionError, ValueError, TypeError) as err:
        raise UserError(f"strategy '{name}': Avalanche's {target.__name__} refused its arguments: "
                        f"{type(err).__name__}: {err}") from None
    # Avalanche 0.6.0's PackNet puts the caller's plugin list inside its own (`[plugins, PackNetPlugin]`),
    # where no callback reaches the runner's plugins: flatten it.
    strategy.plugins = [p for item in strategy.plugins for p in (item if isinstance(item, list) else [item])]
    strategy.scenario_info = setup.info
    strategy.relearn_first = m.relearn_first
    strategy.capture_model_fields = True
    strategy.not_state = m.not_state
    strategy.own_memory_kinds = dict(m.memory_kinds)
    for plugin in strategy.plugins:  # the plugins an Avalanche class makes itself (iCaRL's exemplars)
        keys = set(vars(plugin)) & set(m.memory_kinds)
        if keys and not getattr(plugin, "memory_kinds", None):
            plugin.memory_kinds = {k: m.memory_kinds[k] for k in keys}
    if m.resume:
        strategy.resume_refusal = f"the checkpoint cannot save {m.resume}"
    return strategy


def _arguments(m: Method, options: dict[str, Any], model: nn.Module, setup: TrainingSetup) -> dict[str, Any]:
    """The options with the harness's run-dependent defaults, and the fixed values filled from the run."""
    args = dict(options)
    if "batch_size_mem" in args and args["batch_size_mem"] is None and m.defaults.get("batch_size_mem", 0) is None:
        args["batch_size_mem"] = setup.batch_size
    if m.name == "packnet":  # it prunes after epochs - post_prune_epochs, then fine-tunes what is left
        post = args["post_prune_epochs"]
        args["post_prune_epochs"] = max(1, setup.epochs // 2) if post is None else post
        if not 1 <= args["post_prune_epochs"] < setup.epochs:
            raise UserError(f"strategy 'packnet': post_prune_epochs ({args['post_prune_epochs']}) must be at least "
                            f"1 and smaller than the run's epochs ({setup.epochs}); PackNet needs epochs >= 2.")
    if m.name == "er-aml" and args["mem_size"] // setup.info.n_classes < setup.batch_size:
        # ER_AML draws a full minibatch from every class's part of the buffer (drop_last) and loops forever
        # on a part smaller than that.
        raise UserError(f"strategy 'er-aml': Avalanche's ER_AML needs at least batch_size ({setup.batch_size}) "
                        f"stored inputs per class and hangs with fewer; raise mem_size to "
                        f"{setup.batch_size * setup.info.n_classes} or lower --set batch_size.")
    if m.name == "rwalk":  # its importances are normalised by scores it updates every delta_t iterations
        steps = min(-(-e.n_train // setup.batch_size) * setup.epochs for e in setup.info.experiences)
        if args["delta_t"] is None:
            args["delta_t"] = min(10, steps)
        if args["delta_t"] > steps:
            raise UserError(f"strategy 'rwalk': delta_t ({args['delta_t']}) is more than the training iterations "
                            f"of the shortest experience ({steps}), and RWalk's loss turns NaN then; lower delta_t.")
    for key, value in m.fixed.items():
        args[key] = _resolve(value, model, setup)
    return {k: v for k, v in args.items() if v is not _DROP}


def _resolve(value: Any, model: nn.Module, setup: TrainingSetup) -> Any:
    if not (isinstance(value, str) and value.startswith("@")):
        return value
    info = setup.info
    resolvers = {
        "@model": lambda: model,
        "@features": lambda: models.Features(model),
        "@feature_dim": lambda: models.feature_dim(model, info.input_shape),
        "@n_classes": lambda: info.n_classes,
        "@input_shape": lambda: list(info.input_shape),
        "@batch_size": lambda: setup.batch_size,
        _DROP: lambda: _DROP,
    }
    return resolvers[value]()


@functools.cache
def _parameters(cls: type) -> tuple[set[str], bool]:
    params = inspect.signature(cls.__init__).parameters.values()
    return {p.name for p in params}, any(p.kind is p.VAR_KEYWORD for p in params)


def _accepts(cls: type, key: str) -> bool:
    names, var_keyword = _parameters(cls)
    return key in names or (var_keyword and key in _parameters(SupervisedTemplate)[0])


class ZooTemplate(ExperienceFactsMixin, HarnessTemplate):
    """The harness template for a method that is an Avalanche plugin."""


@functools.cache
def harness_class(cls: type) -> type:
    """`cls` with the harness's mixins in front; the tensor data path only where `cls` does not make its own
    train loader (such a class keeps Avalanche's)."""
    own_loader = cls.make_train_dataloader is not SupervisedTemplate.make_train_dataloader
    bases = ((ExperienceFactsMixin, ZooStateMixin, PrecisionMixin, CheckpointMixin)
             + (() if own_loader else (TensorLoadersMixin,)) + (cls,))
    return type(f"Harness{cls.__name__}", bases, {"__module__": __name__, "__doc__": f"Avalanche's {cls.__name__} "
                                                  f"on the harness's terms (strategies/zoo/build.py)."})
