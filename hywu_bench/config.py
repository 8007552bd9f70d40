"""RunSpec: one validated, frozen description of a run.

Resolved in this order, later winning: the dataclass defaults, an optional `--config run.toml`, the CLI
flags, then `--set key=value` pairs. A `--set` key is a RunSpec field (`epochs=3`), a scenario or strategy
option with an explicit prefix (`scenario.n_experiences=5`, `strategy.mem_size=200`), or an unprefixed
option name that only one of the two declares (`mem_size=200`). Values are parsed as TOML values
(`lr=1e-3`, `sites=["fc1","fc2"]`), else taken as strings. Everything is validated before any work starts.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from hywu_bench.errors import UserError
from hywu_bench.registry import SCENARIOS, STRATEGIES, coerce, did_you_mean, load_builtins

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_SCENARIO = "split-digits"
DEFAULT_STRATEGY = "hywu"
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


@dataclass(frozen=True)
class RunSpec:
    scenario: str = DEFAULT_SCENARIO
    strategy: str = DEFAULT_STRATEGY
    seed: int = 0
    epochs: int | None = None  # None: the scenario's recommended number of epochs per experience
    batch_size: int | None = None  # None: the scenario's recommended minibatch size
    lr: float | None = None  # None: the scenario's recommended learning rate (strategies may override)
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: float = 0.0  # SGD only
    backbone: Literal["auto", "mlp", "cnn", "resnet18"] = "auto"  # auto: MLP for flat/8x8, CNN for 28x28,
    #                                                              ResNet-18 for CIFAR
    warm_start: bool = True  # train the backbone on experience 0 once, shared by every strategy
    device: str = "auto"  # auto | cpu | cuda[:k]
    eval_batch_size: int = 1024
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: every strategy's forward passes under bf16 autocast,
    #                                             CUDA or CPU
    data_root: str | None = None  # None: $HYWU_BENCH_DATA, else the user cache folder
    download: bool = False  # fetch missing datasets with torchvision (needs a network)
    name: str | None = None  # run folder name; default: the strategy name
    validation: float = 0.0  # > 0: hold out this fraction of each experience's training data and evaluate
    # on it instead of the test split (for choosing hyperparameters); results go to <scenario>-validation
    memory_budget: int | None = None  # bytes of stored memory (`--set memory_budget=1.4MiB`) that size the
    # strategy's buffer or anchors (hywu_bench.memory); None: the strategy's own options
    scenario_options: dict[str, Any] = field(default_factory=dict)
    strategy_options: dict[str, Any] = field(default_factory=dict)
    eval_every: int = 0  # > 0: also evaluate on the test experiences seen so far every N training iterations
    # (continual evaluation, De Lange et al. 2023): curve.csv, min-ACC and WC-ACC; 0: off
    data_path: Literal["tensor", "avalanche"] = "tensor"  # a harness check: "avalanche" forces Avalanche's
    # own data loaders instead of the tensor fast path (benchmarks/data_path.py compares the two)

    def __post_init__(self) -> None:
        checks = [
            (self.seed >= 0, f"seed must be >= 0 (got {self.seed})"),
            (self.epochs is None or self.epochs > 0, f"epochs must be > 0 (got {self.epochs})"),
            (self.batch_size is None or self.batch_size > 0, f"batch_size must be > 0 (got {self.batch_size})"),
            (self.lr is None or self.lr > 0, f"lr must be > 0 (got {self.lr})"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1) (got {self.momentum})"),
            (0 <= self.validation < 1, f"validation must be a fraction in [0, 1) (got {self.validation})"),
            (self.eval_every >= 0, f"eval_every must be >= 0 iterations (0: off), got {self.eval_every}"),
            (self.data_path in ("tensor", "avalanche"),
             f"unknown data_path '{self.data_path}'; use tensor or avalanche"),
            (self.eval_batch_size > 0, f"eval_batch_size must be > 0 (got {self.eval_batch_size})"),
            (bool(_DEVICE.match(self.device)), f"unknown device '{self.device}'; use auto, cpu, cuda or cuda:K"),
            (self.memory_budget is None or self.memory_budget > 0,
             f"memory_budget must be > 0 bytes (got {self.memory_budget})"),
            (self.name is None or re.fullmatch(r"[A-Za-z0-9_.+-]+", self.name) is not None,
             f"name '{self.name}' may only contain letters, digits and _ . + -"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)

    @property
    def run_name(self) -> str:
        return self.name or self.strategy

    @property
    def scenario_label(self) -> str:
        """The scenario's results folder: a scenario read from a file is named after the file too."""
        path = self.scenario_options.get("path")
        label = f"{self.scenario}-{Path(str(path)).stem}" if path else self.scenario
        return f"{label}-validation" if self.validation else label

    def input_fingerprint(self) -> str | None:
        """SHA-256 of a scenario file named by the `path` option, so an edited file is never mistaken
        for the one a stored run (or a cached warm start) was made from."""
        path = self.scenario_options.get("path")
        if not path or not Path(str(path)).is_file():
            return None
        import hashlib

        return hashlib.sha256(Path(str(path)).read_bytes()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def same_request(self, stored: dict[str, Any] | None) -> bool:
        """Whether a stored run's `requested_spec` asks for exactly this run. A field added to RunSpec
        after the run was stored counts as its default (the behaviour before the field existed)."""
        if stored is None:
            return False
        defaults = json.loads(json.dumps(RunSpec().to_dict()))
        return {**defaults, **stored} == json.loads(json.dumps(self.to_dict()))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "RunSpec":
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - valid)
        if unknown:
            raise UserError(
                f"{source}: unknown key '{unknown[0]}'.{did_you_mean(unknown[0], sorted(valid))} "
                f"Valid keys: {', '.join(sorted(valid))}."
            )
        hints = _hints()
        values = {k: coerce(_sizes(k, v), hints[k], f"{source}: {k}") for k, v in data.items()}
        return cls(**values)

    def with_updates(self, **changes: Any) -> "RunSpec":
        hints = _hints()
        return dataclasses.replace(self, **{k: coerce(_sizes(k, v), hints[k], k) for k, v in changes.items()})


def _sizes(key: str, value: Any) -> Any:
    """memory_budget as bytes, from `1468006` or `"1.4MiB"`."""
    if key != "memory_budget" or value is None:
        return value
    from hywu_bench.memory import parse_bytes

    return parse_bytes(value)


def _hints() -> dict[str, Any]:
    import typing

    return typing.get_type_hints(RunSpec)


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise UserError(f"config file '{path}' does not exist.") from None
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"config file '{path}' is not valid TOML: {err}.") from None


def parse_value(text: str) -> Any:
    """A TOML value if it parses as one (`3`, `1e-3`, `true`, `[1, 2]`, `"x"`), else the raw string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_set(pairs: list[str]) -> list[tuple[str, Any]]:
    out = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set '{pair}' is malformed; write it as key=value, e.g. --set epochs=3.")
        out.append((key.strip(), parse_value(value.strip())))
    return out


def resolve_spec(
    *, config_file: str | Path | None = None, flags: dict[str, Any] | None = None, sets: list[str] | None = None
) -> RunSpec:
    """Merge defaults, a TOML file, CLI flags (None = not given) and --set pairs into a valid RunSpec."""
    load_builtins()
    data: dict[str, Any] = {}
    if config_file is not None:
        data.update(load_toml(config_file))
        data = RunSpec.from_dict(data, source=str(config_file)).to_dict()  # type-check the file on its own
    data.update({k: v for k, v in (flags or {}).items() if v is not None})
    data["scenario_options"] = dict(data.get("scenario_options") or {})
    data["strategy_options"] = dict(data.get("strategy_options") or {})
    spec_fields = {f.name for f in fields(RunSpec)} - {"scenario_options", "strategy_options"}
    scenario = data.get("scenario", DEFAULT_SCENARIO)
    strategy = data.get("strategy", DEFAULT_STRATEGY)
    for key, value in parse_set(sets or []):
        prefix, dot, option = key.partition(".")
        if dot and prefix in ("scenario", "strategy"):
            data[f"{prefix}_options"][option] = value
        elif key in spec_fields:
            data[key] = value
            scenario, strategy = data.get("scenario", scenario), data.get("strategy", strategy)
        else:
            data[_owner_of(key, scenario, strategy)][key] = value
    spec = RunSpec.from_dict(data, source="run spec")
    # Validate the names and options now, before any data is loaded or any model is built.
    SCENARIOS.options(spec.scenario, spec.scenario_options)
    STRATEGIES.options(spec.strategy, spec.strategy_options)
    from hywu_bench.memory import check_budget_request

    check_budget_request(STRATEGIES.get(spec.strategy), spec.memory_budget, spec.strategy_options)
    return spec


def _owner_of(key: str, scenario: str, strategy: str) -> str:
    in_scenario = key in SCENARIOS.get(scenario).option_defaults()
    in_strategy = key in STRATEGIES.get(strategy).option_defaults()
    if in_scenario and in_strategy:
        raise UserError(f"--set {key}=... is ambiguous; write scenario.{key}=... or strategy.{key}=...")
    if in_scenario:
        return "scenario_options"
    if in_strategy:
        return "strategy_options"
    valid = sorted({f.name for f in fields(RunSpec)} - {"scenario_options", "strategy_options"})
    valid += [f"scenario.{k}" for k in SCENARIOS.get(scenario).option_defaults()]
    valid += [f"strategy.{k}" for k in STRATEGIES.get(strategy).option_defaults()]
    raise UserError(f"--set: unknown key '{key}'.{did_you_mean(key, valid)} Valid keys: {', '.join(valid)}.")
