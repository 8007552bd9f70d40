"""`precision=bf16` is honoured by every strategy: its forward passes run under bf16 autocast (on CPU too),
in training and in evaluation, whatever the strategy does in its own `forward()` (HarnessTemplate's
PrecisionMixin owns it)."""

from __future__ import annotations

import pytest
import torch
from avalanche.core import SupervisedPlugin
from avalanche.models.packnet import _PnLinear
from torch import nn

from hywu_bench.config import RunSpec
from hywu_bench.data import (
    ExperienceInfo,
    ExperienceTensors,
    ScenarioInfo,
    make_scenario,
)
from hywu_bench.errors import UserError
from hywu_bench.models import build_backbone
from hywu_bench.registry import STRATEGIES, load_builtins
from hywu_bench.training import TrainingSetup

SHAPE = (1, 8, 8)
load_builtins()


def _scenario(setting: str):
    """Two experiences of two classes each on 8x8 inputs."""
    train, test, infos = [], [], []
    for e in range(2):
        classes = (2 * e, 2 * e + 1)
        y = torch.tensor(classes).repeat(16)
        x = torch.rand(32, *SHAPE) + y.view(-1, 1, 1, 1) / 10
        train.append(ExperienceTensors(x, y, task=e if setting == "task" else 0))
        test.append(ExperienceTensors(x[:8], y[:8], task=e if setting == "task" else 0))
        infos.append(ExperienceInfo(e, classes, "fake", n_train=32, n_test=8))
    return make_scenario(train, test, ScenarioInfo("fake", setting, 4, SHAPE, tuple(infos)))


class _ForwardWindow(SupervisedPlugin):
    """Marks the strategy's own forward pass of each minibatch (plugins' extra passes, such as A-GEM's
    reference gradients or EWC's importances, run in float32 outside it)."""

    def __init__(self) -> None:
        super().__init__()
        self.open = False

    def before_forward(self, strategy, **kwargs):
        self.open = True

    def after_forward(self, strategy, **kwargs):
        self.open = False

    before_eval_forward, after_eval_forward = before_forward, after_forward


def _dtypes_seen(strategy, scenario) -> dict[str, set[torch.dtype]]:
    """The output dtypes of every Linear of the strategy's model in its forward passes, training and eval."""
    seen: dict[str, set[torch.dtype]] = {"train": set(), "eval": set()}
    window = _ForwardWindow()
    strategy.plugins.append(window)

    def hook(module: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        if window.open:
            seen["train" if strategy.is_training else "eval"].add(out.dtype)

    linear = (nn.Linear, _PnLinear)  # PackNet wraps every Linear in its own module
    handles = [m.register_forward_hook(hook) for m in strategy.model.modules() if type(m) in linear]
    try:
        if getattr(strategy, "offline", False):
            strategy.train(scenario.train_stream)
        else:
            for experience in scenario.train_stream:
                strategy.train(experience)
        strategy.eval(scenario.test_stream)
    finally:
        for h in handles:
            h.remove()
    return seen


RUNNABLE = sorted(n for n in STRATEGIES.names() if not str(STRATEGIES.get(n).builder).endswith(":unavailable"))


def _refuses_bf16(name: str) -> str | None:
    from strategies.zoo.catalogue import METHODS

    return next((m.no_bf16 for m in METHODS if m.name == name), None)


@pytest.mark.parametrize("name", RUNNABLE)
def test_every_strategy_runs_its_forward_passes_in_bf16_or_refuses_it(name):
    settings = STRATEGIES.get(name).settings
    setting = "task" if name in ("hnet",) or "class" not in settings else "class"
    scenario = _scenario(setting)
    spec = RunSpec(strategy=name, precision="bf16", device="cpu", warm_start=True)
    epochs = 2 if name == "packnet" else 1  # PackNet prunes after its first epochs: it needs two
    setup = TrainingSetup(spec, scenario.info, torch.device("cpu"), epochs=epochs, batch_size=8, lr=0.05)
    if _refuses_bf16(name):
        with pytest.raises(UserError, match=f"'{name}' cannot run with precision=bf16"):
            STRATEGIES.build(name, build_backbone("mlp", SHAPE, 4, seed=0), setup)
        return
    strategy = STRATEGIES.build(name, build_backbone("mlp", SHAPE, 4, seed=0), setup)
    strategy.precision = "bf16"  # as the runner sets it
    seen = _dtypes_seen(strategy, scenario)
    assert seen == {"train": {torch.bfloat16}, "eval": {torch.bfloat16}}, seen
    assert not torch.is_autocast_enabled("cpu")  # left after every forward


def test_hywu_forward_sees_bf16_and_its_loss_is_float32():
    from strategies.hywu.strategy import HYWUStrategy

    scenario = _scenario("class")
    spec = RunSpec(strategy="hywu", precision="bf16", device="cpu")
    setup = TrainingSetup(spec, scenario.info, torch.device("cpu"), epochs=1, batch_size=8, lr=0.05)
    strategy = STRATEGIES.build("hywu", build_backbone("mlp", SHAPE, 4, seed=0), setup)
    strategy.precision = "bf16"
    inside: list[tuple[torch.dtype, bool]] = []
    original = HYWUStrategy.forward

    def watched(self):
        out = original(self)
        inside.append((out.dtype, torch.is_autocast_enabled("cpu")))
        return out

    class Losses(SupervisedPlugin):
        def before_backward(self, strategy, **kwargs):
            losses.append((strategy.mb_output.dtype, strategy.loss.dtype, bool(torch.isfinite(strategy.loss))))

    losses: list[tuple[torch.dtype, torch.dtype, bool]] = []
    strategy.plugins.append(Losses())
    HYWUStrategy.forward = watched
    try:
        for experience in scenario.train_stream:  # the second experience rehearses stored anchors
            strategy.train(experience)
    finally:
        HYWUStrategy.forward = original
    assert inside and all(dtype == torch.bfloat16 and on for dtype, on in inside)
    assert losses and all(out == loss == torch.float32 and finite for out, loss, finite in losses)
    assert strategy.last_anchor_loss is not None  # the rehearsal term ran (in float32) too


def test_fp32_stays_fp32():
    scenario = _scenario("class")
    spec = RunSpec(strategy="naive", device="cpu")
    setup = TrainingSetup(spec, scenario.info, torch.device("cpu"), epochs=1, batch_size=8, lr=0.05)
    strategy = STRATEGIES.build("naive", build_backbone("mlp", SHAPE, 4, seed=0), setup)
    seen = _dtypes_seen(strategy, scenario)
    assert seen == {"train": {torch.float32}, "eval": {torch.float32}}
