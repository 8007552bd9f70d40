"""Registry lookups, option validation, RunSpec resolution from flags, --set and TOML."""

from dataclasses import dataclass
from typing import Literal

import pytest

from hywu_bench.config import RunSpec, parse_set, resolve_spec
from hywu_bench.errors import UserError
from hywu_bench.registry import Registry, load_builtins


@dataclass(frozen=True)
class Opts:
    size: int = 3
    rate: float = 0.5
    mode: Literal["a", "b"] = "a"
    sites: tuple[str, ...] = ("fc1",)


def make_registry():
    reg = Registry("widget")

    @reg.register("square", help="a square", settings=("class",), options=Opts, aliases=("sq",))
    def build(x, options):
        return (x, options)

    return reg


def test_build_applies_and_coerces_options():
    reg = make_registry()
    x, opts = reg.build("sq", 1, size="4", rate=1, sites="fc1,fc2")
    assert x == 1 and opts == Opts(size=4, rate=1.0, sites=("fc1", "fc2"))


def test_unknown_name_lists_valid_and_suggests():
    with pytest.raises(UserError, match=r"unknown widget 'squre'. Did you mean 'square'\?.*Valid widgets: square"):
        make_registry().get("squre")


def test_unknown_option_lists_valid_and_suggests():
    with pytest.raises(UserError, match=r"unknown option 'sise'.*Did you mean 'size'.*Valid options: size, rate"):
        make_registry().options("square", {"sise": 1})


@pytest.mark.parametrize("key,value", [("size", "big"), ("mode", "c"), ("rate", True)])
def test_wrong_option_types_are_errors(key, value):
    with pytest.raises(UserError, match=key):
        make_registry().options("square", {key: value})


def test_duplicate_registration_is_an_error():
    reg = make_registry()
    with pytest.raises(UserError, match="registered twice"):
        reg.register("square", help="again", settings=("class",), options=Opts)(lambda: None)


def test_settings_and_options_are_checked_at_registration():
    reg = Registry("widget")
    with pytest.raises(ValueError, match="settings"):
        reg.register("x", help="", settings=("sideways",), options=Opts)

    @dataclass
    class Mutable:
        a: int = 1

    with pytest.raises(TypeError, match="frozen"):
        reg.register("y", help="", settings=("class",), options=Mutable)


def test_every_builtin_declares_help_settings_and_options():
    load_builtins()
    from hywu_bench.registry import SCENARIOS, STRATEGIES

    assert "split-digits" in SCENARIOS and "naive" in STRATEGIES
    for entry in SCENARIOS.entries() + STRATEGIES.entries():
        assert entry.help and entry.settings
        entry.option_defaults()  # every option has a default


def test_spec_validation():
    for bad in (dict(epochs=0), dict(lr=-1.0), dict(seed=-1), dict(device="tpu"), dict(batch_size=0)):
        with pytest.raises(UserError):
            RunSpec(**bad)


def test_resolve_flags_set_and_toml(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('strategy = "replay"\nepochs = 2\nseed = 3\n[strategy_options]\nmem_size = 50\n')
    spec = resolve_spec(config_file=cfg, flags=dict(seed=4, epochs=None),
                        sets=["lr=1e-3", "scenario.n_experiences=5", "mem_size=80", "setting=task"])
    assert (spec.strategy, spec.epochs, spec.seed, spec.lr) == ("replay", 2, 4, 1e-3)
    assert spec.strategy_options == {"mem_size": 80}
    assert spec.scenario_options == {"n_experiences": 5, "setting": "task"}


@pytest.mark.parametrize("text,match", [
    ("epochs = ", "not valid TOML"),
    ("epoch = 3", "unknown key 'epoch'.*Did you mean 'epochs'"),
    ('epochs = "three"', "wrong type"),
    ("[strategy_options]\nmem = 3", "unknown option 'mem'"),
])
def test_bad_toml(tmp_path, text, match):
    cfg = tmp_path / "run.toml"
    cfg.write_text(text)
    with pytest.raises(UserError, match=match):
        resolve_spec(config_file=cfg)


def test_bad_set():
    with pytest.raises(UserError, match="malformed"):
        parse_set(["epochs"])
    with pytest.raises(UserError, match="unknown key 'nope'"):
        resolve_spec(sets=["nope=1"])
    with pytest.raises(UserError, match="epochs must be > 0"):
        resolve_spec(sets=["epochs=-2"])


def test_missing_config_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        resolve_spec(config_file=tmp_path / "missing.toml")
