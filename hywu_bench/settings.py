"""The settings a run uses: its request resolved against the scenario's recommendations and the strategy's
options tuned for the scenario's family.

A RunSpec leaves epochs, batch size, learning rate and backbone unset unless the user sets them; the
scenario recommends them, and a strategy may recommend options per scenario family (`Entry.tuned`). What
a run really uses (`used_settings`) is saved in its config.json, and compared with what this version
resolves for the same request (`stale_settings`) before a stored run is reused: a release that changes a
recommendation must not pass old results off as new ones.

Light at import (no torch): the scenario is built only when its recommendations are needed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any

from hywu_bench.config import RunSpec
from hywu_bench.errors import UserError
from hywu_bench.registry import SCENARIOS, STRATEGIES, load_builtins

log = logging.getLogger(__name__)


def default_backbone(input_shape: tuple[int, ...]) -> str:
    """MLP for flat or 8x8 inputs and grey images, the reduced ResNet-18 for colour images."""
    c, h, w = input_shape
    if h * w <= 64:
        return "mlp"
    return "resnet18" if c == 3 else "mlp"


def resolve_hyperparameters(spec: RunSpec, info: Any) -> RunSpec:
    """Fill what the spec leaves unset from the scenario's recommendations (`info`: its ScenarioInfo):
    epochs, batch size, lr, backbone, and the options the strategy recommends for the scenario's family
    (`Entry.tuned`, chosen on validation splits); options the user set always win, key by key. With a
    `memory_budget`, the option the strategy's budget declares is sized to it (`memory.sized_options`)."""
    from hywu_bench.memory import sized_options

    rec = info.recommended
    backbone = spec.backbone if spec.backbone != "auto" else rec.get("backbone", default_backbone(info.input_shape))
    entry = STRATEGIES.get(spec.strategy)
    tuned = entry.tuned_for(SCENARIOS.get(spec.scenario).family)
    resolved = replace(spec, epochs=spec.epochs or rec.get("epochs", 1),
                       batch_size=spec.batch_size or rec.get("batch_size", 64), lr=spec.lr or rec.get("lr", 0.01),
                       backbone=backbone, strategy_options={**tuned, **spec.strategy_options})
    return replace(resolved, strategy_options=sized_options(entry, resolved, info, resolved.strategy_options))


def used_settings(resolved: RunSpec) -> dict[str, Any]:
    """What a run really uses, as config.json stores it: the resolved spec and every strategy option."""
    options = vars(STRATEGIES.options(resolved.strategy, resolved.strategy_options))
    return {"spec": resolved.to_dict(), "options": options}


def changed_settings(now: dict[str, Any], config: dict[str, Any]) -> str | None:
    """`now` (from `used_settings`) against a stored config, as 'key old -> new, ...', or None. Settings
    added after the run was stored count as their defaults (as in `RunSpec.same_request`)."""
    now = _plain(now)
    then = _plain({"spec": {**now["spec"], **config.get("spec", {})},
                   "options": {**now["options"], **config.get("strategy", {}).get("options", {})}})
    changed = [f"{key} {then[part][key]!r} -> {now[part][key]!r}" for part in ("spec", "options")
               for key in now[part] if then[part][key] != now[part][key] and key != "strategy_options"]
    return ", ".join(changed) if changed else None


def stale_settings(spec: RunSpec, config: dict[str, Any], resolved: RunSpec | None = None) -> str | None:
    """What differs between the settings a stored run used (`config`) and those this version resolves for
    the same request, or None. `resolved`: the spec already resolved against the scenario (saves building
    it again). None too when the scenario cannot be built here (e.g. its data is gone): the stored run is
    then taken as it is, with a warning."""
    if resolved is None:
        try:
            resolved = resolve_hyperparameters(spec, scenario_info(spec))
        except UserError as err:
            log.warning("cannot check '%s' against this version's settings: %s", spec.scenario, err)
            return None
    return changed_settings(used_settings(resolved), config)


_INFO_CACHE: dict[str, Any] = {}


def scenario_info(spec: RunSpec) -> Any:
    """The scenario's description (ScenarioInfo) for `spec`, its data built once per process and dropped."""
    key = json.dumps([spec.scenario, spec.seed, spec.scenario_options, spec.data_root, spec.download,
                      spec.validation], sort_keys=True, default=str)
    if key not in _INFO_CACHE:
        load_builtins()
        scenario = SCENARIOS.build(spec.scenario, spec, **spec.scenario_options)
        if spec.validation:  # the experiences' sizes as the run sees them (a budget's count depends on them)
            from hywu_bench.data import holdout

            try:
                scenario = holdout(scenario, spec.validation, spec.seed)
            except ValueError as err:
                raise UserError(f"--set validation={spec.validation:g}: {err}") from None
        _INFO_CACHE[key] = scenario.info
    return _INFO_CACHE[key]


def _plain(value: Any) -> Any:
    """As JSON stores it (tuples become lists), to compare stored settings with live ones."""
    return json.loads(json.dumps(value, default=str))
