"""Name -> builder registries for scenarios and strategies.

Names are cheap, builders are heavy. An entry declares its name, a one-line help, the settings it supports
(class-, domain-, task-incremental), a frozen dataclass of its options and its builder, either by reference
(loaded only when a run starts, so `list`, `--help` and every validation error never import torch)::

    STRATEGIES.register("replay", help="...", settings=ALL_SETTINGS, options=ReplayOptions,
                        builder="strategies.baselines.strategy:build_replay")

or, in a plugin file that imports torch anyway, as a decorator on the builder itself::

    @STRATEGIES.register("blobs", help="...", settings=("class",), options=BlobOptions)
    def build_blobs(spec, options): ...

`Registry.options(name, overrides)` turns user overrides into that dataclass, with an error listing the
valid options (and the closest match) for an unknown one. The shipped scenarios and strategies, and any
installed package's, are found through the entry point groups `hywu_bench.scenarios` and
`hywu_bench.strategies` (`load_entry_points`); a user's file registers with `--plugin` (`load_plugin_file`).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import importlib.util
import sys
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

from hywu_bench.errors import UserError

SETTINGS = ("class", "domain", "task")
ALL_SETTINGS = SETTINGS
BUILTIN = "hywu-bench"  # the source of the shipped entries
Role = Literal["method", "reference", "oracle"]


@dataclass(frozen=True)
class Entry:
    name: str
    help: str
    settings: tuple[str, ...]
    options: type  # a frozen dataclass
    builder: str | Callable[..., Any]  # a callable, or "module:function", imported when first built
    aliases: tuple[str, ...] = ()
    source: str = BUILTIN  # where it was registered from (a plugin file, an entry point)
    bind: Mapping[str, Any] = field(default_factory=dict)  # keyword arguments bound into the builder
    family: str | None = None  # scenarios: the family whose tuned strategy options apply (e.g. "drift")
    tuned: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # strategies: family -> options
    role: Role = "method"  # strategies: "reference" (joint, cumulative) and "oracle" are never ranked
    order: int = 0  # registration order: how lists, tables and figures order the entries
    budget: Any = None  # strategies: a memory.Budget, how a memory budget sizes it; None: it cannot be sized

    def option_defaults(self) -> dict[str, Any]:
        return {f.name: _default_of(f) for f in fields(self.options)}

    def load(self) -> Callable[..., Any]:
        """The builder, importing its module on first use (a reference names a missing module or function:
        a one-line error naming the entry)."""
        fn = self.builder
        if isinstance(fn, str):
            module, _, attr = fn.partition(":")
            try:
                fn = getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError) as err:
                raise UserError(f"'{self.name}' ({self.source}) cannot load its builder '{self.builder}': "
                                f"{type(err).__name__}: {err}") from None
        return functools.partial(fn, **self.bind) if self.bind else fn

    def tuned_for(self, family: str | None) -> dict[str, Any]:
        """The options this strategy recommends on a scenario family (chosen on validation splits)."""
        return dict(self.tuned.get(family, {})) if family else {}


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def did_you_mean(name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._aliases: dict[str, str] = {}
        self._source = BUILTIN

    def register(self, name: str, *, help: str, settings: tuple[str, ...], options: type,
                 builder: str | Callable[..., Any] | None = None, aliases: tuple[str, ...] = (),
                 bind: Mapping[str, Any] | None = None, family: str | None = None,
                 tuned: Mapping[str, Mapping[str, Any]] | None = None, role: Role = "method",
                 budget: Any = None) -> Any:
        """Register `name`. With `builder` (a callable or "module:function") the entry is registered now;
        without, this returns a decorator that registers the function it decorates. `budget`: a
        `hywu_bench.memory.Budget` naming the option a memory budget sizes (rehearsal methods)."""
        bad = [s for s in settings if s not in SETTINGS]
        if bad or not settings:
            raise ValueError(f"{self.kind} '{name}': settings must be a non-empty subset of {SETTINGS}")
        if not (dataclasses.is_dataclass(options) and options.__dataclass_params__.frozen):
            raise TypeError(f"{self.kind} '{name}': options must be a frozen dataclass")
        if isinstance(builder, str) and ":" not in builder:
            raise ValueError(f"{self.kind} '{name}': a builder reference reads 'module:function', not {builder!r}")
        for key in tuned or {}:
            self.check_options(name, options, tuned[key], f"tuned options for '{key}'")
        if budget is not None:
            self.check_options(name, options, {budget.option: None}, "the budget")

        def add(fn: str | Callable[..., Any]) -> Any:
            for key in (name, *aliases):
                if key in self._entries or key in self._aliases:
                    where = self._entries.get(self._aliases.get(key, key))
                    raise UserError(
                        f"{self.kind} '{key}' is registered twice (by {where.source if where else '?'} "
                        f"and by {self._source}); rename one of them."
                    )
            self._entries[name] = Entry(name, help, tuple(settings), options, fn, tuple(aliases), self._source,
                                        dict(bind or {}), family, dict(tuned or {}), role, len(self._entries), budget)
            for alias in aliases:
                self._aliases[alias] = name
            return fn

        if builder is not None:
            add(builder)
            return None
        return add

    def check_options(self, name: str, options: type, values: Mapping[str, Any], what: str) -> None:
        unknown = sorted(set(values) - {f.name for f in fields(options)})
        if unknown:
            raise ValueError(f"{self.kind} '{name}': {what} name unknown options {unknown}")

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        """Every entry in registration order (the shipped ones first, in the order their modules chose)."""
        return sorted(self._entries.values(), key=lambda e: e.order)

    def __contains__(self, name: str) -> bool:
        return name in self._entries or name in self._aliases

    def get(self, name: str) -> Entry:
        key = self._aliases.get(name, name)
        if key not in self._entries:
            valid = self.names()
            raise UserError(
                f"unknown {self.kind} '{name}'.{did_you_mean(name, valid + list(self._aliases))} "
                f"Valid {self.kind}s: {', '.join(valid)}."
            )
        return self._entries[key]

    def options(self, name: str, overrides: dict[str, Any] | None = None) -> Any:
        """The entry's options dataclass with `overrides` applied and type-checked."""
        entry = self.get(name)
        valid = {f.name: f for f in fields(entry.options)}
        values = {}
        for key, value in (overrides or {}).items():
            if key not in valid:
                listed = ", ".join(valid) or "none"
                raise UserError(
                    f"unknown option '{key}' for {self.kind} '{entry.name}'.{did_you_mean(key, list(valid))} "
                    f"Valid options: {listed}."
                )
            values[key] = coerce(value, _field_type(entry.options, key), f"{entry.name}.{key}")
        try:
            return entry.options(**values)
        except ValueError as err:  # options' own __post_init__ validation
            raise UserError(f"{self.kind} '{entry.name}': {err}") from None

    def build(self, name: str, *args: Any, **overrides: Any) -> Any:
        return self.get(name).load()(*args, options=self.options(name, overrides))

    def from_source(self, source: str) -> "_SourceContext":
        return _SourceContext(self, source)

    def forget_source(self, source: str) -> None:
        """Drop what `source` registered (a plugin that failed halfway), so a fixed file can load again."""
        for name in [n for n, e in self._entries.items() if e.source == source]:
            del self._entries[name]
        self._aliases = {a: n for a, n in self._aliases.items() if n in self._entries}


class _SourceContext:
    """Marks entries registered inside the block as coming from `source` (a plugin file)."""

    def __init__(self, registry: Registry, source: str):
        self.registry, self.source, self.previous = registry, source, registry._source

    def __enter__(self) -> None:
        self.registry._source = self.source

    def __exit__(self, *exc: object) -> None:
        self.registry._source = self.previous


def _field_type(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def coerce(value: Any, annotation: Any, label: str) -> Any:
    """Check `value` against a dataclass field annotation, converting where it is lossless."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, label)
            except UserError:
                continue
        raise UserError(f"'{label}' = {value!r} has the wrong type; expected {_type_name(annotation)}.")
    if origin is typing.Literal:
        if value not in args:
            raise UserError(f"'{label}' = {value!r} is not one of {', '.join(map(repr, args))}.")
        return value
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise UserError(f"'{label}' = {value!r} should be a list, e.g. [1, 2] or a comma-separated string.")
        inner = args[0] if args else Any
        items = [coerce(v, inner, label) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"'{label}' = {value!r} should be a table of key = value pairs.")
        return dict(value)
    if annotation is Any:
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lstrip("-").isdigit():
            return int(value)
    elif annotation is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    elif isinstance(annotation, type) and isinstance(value, annotation):
        return value
    raise UserError(f"'{label}' = {value!r} has the wrong type; expected {_type_name(annotation)}.")


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def load_plugin_file(path: str | Path) -> None:
    """Import a user's Python file whose decorators register scenarios or strategies."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"plugin file '{path}' does not exist; pass the path of a .py file.")
    module_name = f"hywu_bench_plugin_{path.stem}_{abs(hash(str(path.resolve())))}"
    if module_name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"plugin file '{path}' cannot be imported; it must be a Python (.py) file.")
    module = importlib.util.module_from_spec(spec)
    load_builtins()  # first, so a clash names the plugin

    with SCENARIOS.from_source(str(path)), STRATEGIES.from_source(str(path)):
        try:
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
        except UserError:
            _forget(module_name, str(path))
            raise
        except Exception as err:  # a plugin's own bug: name the file, keep it one line
            _forget(module_name, str(path))
            raise UserError(f"plugin file '{path}' failed to import: {type(err).__name__}: {err}") from None


def _forget(module_name: str, source: str) -> None:
    sys.modules.pop(module_name, None)
    SCENARIOS.forget_source(source)
    STRATEGIES.forget_source(source)


SCENARIOS = Registry("scenario")
STRATEGIES = Registry("strategy")
_GROUPS = (("hywu_bench.scenarios", SCENARIOS), ("hywu_bench.strategies", STRATEGIES))


def load_builtins() -> None:
    """Register the shipped scenarios and strategies: hywu-bench's own entry points (pyproject.toml), so
    the core names no concrete scenario or strategy module and imports none of them itself."""
    _load_entry_points(builtin=True)


def load_entry_points() -> None:
    """Register what installed packages declare under `hywu_bench.scenarios` / `hywu_bench.strategies`."""
    _load_entry_points(builtin=True)
    _load_entry_points(builtin=False)


def _load_entry_points(builtin: bool) -> None:
    from importlib.metadata import entry_points

    found = False
    for group, registry in _GROUPS:
        for ep in entry_points(group=group):
            own = ep.dist is not None and ep.dist.name == BUILTIN
            if own != builtin:
                continue
            found = True
            with registry.from_source(BUILTIN if own else f"entry point {ep.value}"):
                try:
                    ep.load()
                except UserError:
                    raise
                except Exception as err:
                    raise UserError(f"entry point '{ep.name}' ({ep.value}) failed to load: {err}") from None
    if builtin and not found and not any(e.source == BUILTIN for _, r in _GROUPS for e in r.entries()):
        raise UserError("hywu-bench's shipped scenarios and strategies are not registered: the package is not "
                        "installed; run `pip install -e .` in the repository.")
