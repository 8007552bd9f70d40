"""How methods are told apart in tables and figures: role and display order, means with 95% confidence
intervals, ties with the best, replay at equal bytes, and the front page's one table.

pandas, numpy and `stats` (scipy); no torch. A method's role and order come from the strategy registry
(`Entry.role`: "method", "reference" for joint and cumulative training, "oracle" for task-label methods;
`Entry.order`), whose shipped entries register by reference without importing torch. What a run's own
config.json says wins (`strategy.name`, `strategy.role`), so the runs of a plugin read without the plugin
keep their role; an unregistered name without a stored role is a plain method, ordered after the
registered ones.

A run name may be a variant of a base strategy (`replay-mem_size500` of `replay`): its base is
`strategy.name` in config.json, else the registered name it equals or starts with (`<base>-...`).

Seeds are paired across methods (same data, same warm start), so ties with the best are paired tests
(`stats.ties_with_best`: paired t-test below 6 seeds, Wilcoxon signed-rank from 6).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from hywu_bench import stats
from hywu_bench.memory import BYTE_UNITS

log = logging.getLogger(__name__)

ROLES = ("method", "reference", "oracle")
MARKS = {"method": "", "reference": "†", "oracle": "‡"}  # after a name in tables; neither is ever ranked
REHEARSAL = "replay"  # the base whose variants give the "at equal bytes" reference rows
EQUAL_BYTES = 0.05  # ... when their mean stored bytes are within 5% of the method's
TEST_NAMES = {"t": "paired t-test", "wilcoxon": "Wilcoxon signed-rank test"}


@dataclass(frozen=True)
class Method:
    name: str  # the run name, e.g. replay-mem_size500
    base: str  # the strategy it is a variant of, e.g. replay
    role: str  # method | reference | oracle
    rank: tuple  # display order: registry order of the base, then the base itself, then variants

    @property
    def ranked(self) -> bool:
        return self.role == "method"


_REGISTRY: dict[str, Any] = {}


def _entries() -> dict[str, Any]:
    """name or alias -> registry Entry; empty when the shipped strategies cannot be registered."""
    if "strategies" not in _REGISTRY:
        try:
            from hywu_bench.registry import STRATEGIES, load_builtins

            load_builtins()
            _REGISTRY["strategies"] = STRATEGIES
        except Exception as err:  # not installed: names alone still render
            log.warning("strategy registry unavailable (%s); every run is ranked as a method", err)
            return {}
    registry = _REGISTRY["strategies"]
    entries = {e.name: e for e in registry.entries()}
    entries.update({alias: entries[name] for alias, name in registry._aliases.items() if name in entries})
    return entries


_SIZE = re.compile(r"(\d+(?:\.\d+)?)([KMG]iB)?", re.I)


def _natural(name: str) -> list[Any]:
    """'mem_size200' before 'mem_size1000', 'memory_budget512KiB' before 'memory_budget2MiB'; str and number
    alternate, so keys always compare."""
    parts = _SIZE.split(name)  # text, number, unit, text, number, unit, ..., text
    key: list[Any] = [parts[0]]
    for k in range(1, len(parts), 3):
        key += [float(parts[k]) * BYTE_UNITS[(parts[k + 1] or "").lower()], parts[k + 2]]
    return key


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def methods(names: Iterable[str], base: Mapping[str, Any] | None = None,
            role: Mapping[str, Any] | None = None) -> dict[str, Method]:
    """A Method for every run name; `base` and `role` are what runs stored (per name, may be partial)."""
    entries = _entries()
    out = {}
    for name in dict.fromkeys(names):
        stem = _text((base or {}).get(name))
        if stem is None:  # the registered name it equals, else the longest one it starts with
            stem = next((n for n in sorted(entries, key=len, reverse=True)
                         if name == n or name.startswith(n + "-")), name)
        entry = entries.get(stem)
        kind = _text((role or {}).get(name))
        if kind not in ROLES:
            kind = entry.role if entry is not None else "method"
        stem = entry.name if entry is not None else stem
        rank = ((0, entry.order, "") if entry is not None else (1, 0, stem)) + (name != stem, *_natural(name))
        out[name] = Method(name, stem, kind, rank)
    return out


def frame_methods(frame: pd.DataFrame) -> dict[str, Method]:
    """The Method of every run name in a long or per-run frame, with its stored base and role if any."""
    def stored(column: str) -> dict[str, Any]:
        if column not in frame:
            return {}
        pairs = frame[["strategy", column]].dropna().drop_duplicates("strategy")
        return dict(zip(pairs["strategy"], pairs[column]))

    return methods(frame["strategy"], stored("base"), stored("role"))


def order(names: Iterable[str], info: Mapping[str, Method] | None = None) -> list[str]:
    names = list(dict.fromkeys(names))
    info = {**methods(names), **(info or {})}
    return sorted(names, key=lambda n: info[n].rank)


# ---------------------------------------------------------------------------------------------------
# Numbers


def aggregate(per_run: pd.DataFrame, by: list[str], values: list[str]) -> pd.DataFrame:
    """Per group: `<value>_mean`, `_std` (ddof=1), `_ci_lo`, `_ci_hi` (95%, Student t) and n_seeds."""
    rows, index = [], []
    for key, group in per_run.groupby(by, sort=False):
        row: dict[str, float] = {}
        for value in values:
            ci = stats.mean_ci(group[value].to_numpy(dtype=float))
            row.update({f"{value}_mean": ci.mean, f"{value}_std": ci.std, f"{value}_ci_lo": ci.lo,
                        f"{value}_ci_hi": ci.hi})
        row["n_seeds"] = len(group)
        rows.append(row)
        index.append(key if isinstance(key, tuple) else (key,))
    columns = [f"{v}_{s}" for v in values for s in ("mean", "std", "ci_lo", "ci_hi")] + ["n_seeds"]
    return pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=by), columns=columns)


def per_seed(per_run: pd.DataFrame, value: str, names: Iterable[str]) -> dict[str, dict[Any, float]]:
    """method -> {seed: value} in the given order, for `stats.ties_with_best`."""
    out = {}
    for name in names:
        sub = per_run[per_run["strategy"] == name]
        out[name] = dict(zip(sub["seed"], sub[value].astype(float)))
    return out


def mark_ties(table: pd.DataFrame, per_run: pd.DataFrame, columns: Iterable[Any],
              info: Mapping[str, Method], tested: Iterable[str] | None = None) -> pd.DataFrame:
    """Add `<key>_p` (paired p-value against the column's best) and `<key>_tied` (the best, or p >= 0.05)
    for every column with a direction, among the ranked methods of each scenario; `test` names the tests
    a row's comparisons used ("t", "wilcoxon") in the `tested` columns (default: all). Timings are best
    left out of `tested`: which method is fastest changes from one machine to the next."""
    tested = None if tested is None else set(tested)
    table = table.copy()
    tests = pd.Series([set() for _ in range(len(table))], index=table.index, dtype=object)
    for column in columns:
        if column.higher_is_better is None:
            continue
        table[f"{column.key}_p"], table[f"{column.key}_tied"] = math.nan, False
        for scenario, sub in per_run.groupby("scenario", sort=False):
            ranked = [n for n in order(sub["strategy"], info) if info[n].ranked]
            data = per_seed(sub, column.key, ranked)
            if len(data) < 2:
                continue
            for name, tie in stats.ties_with_best(data, column.higher_is_better).items():
                table.loc[(scenario, name), f"{column.key}_p"] = tie.p
                table.loc[(scenario, name), f"{column.key}_tied"] = tie.tied
                if tie.test in TEST_NAMES and (tested is None or column.key in tested):
                    tests[(scenario, name)].add(tie.test)
    table["test"] = tests.map(lambda found: "+".join(sorted(found)))
    return table


def tests_used(table: pd.DataFrame) -> list[str]:
    """The tests a ranked table's comparisons used, in words."""
    found = {t for cell in table.get("test", pd.Series(dtype=object)).dropna() for t in str(cell).split("+") if t}
    return [TEST_NAMES[t] for t in ("t", "wilcoxon") if t in found]


def budget_status(statuses: Iterable[Any]) -> str:
    """One status for a method's seeds: the common one, else the worst with its count ("over in 1 of 3 seeds")."""
    statuses = list(statuses)
    found = [s for s in statuses if _text(s)]
    if not found:
        return ""
    if len(set(found)) == 1 and len(found) == len(statuses):
        return found[0]
    worst = next((s for s in ("over", "under") if s in found), found[0])
    return f"{worst} in {found.count(worst)} of {len(statuses)} seeds"


def equal_bytes(table: pd.DataFrame, info: Mapping[str, Method],
                key: str = "stored_memory_bytes_mean") -> dict[Any, Any]:
    """Index of a method row that stores something -> index of the replay variant whose mean stored bytes
    are closest to its own, within 5% (same scenario); methods without one are left out."""
    out = {}
    for ix in table.index:
        name, own = ix[-1], table.at[ix, key]
        if not info[name].ranked or info[name].base == REHEARSAL or not own > 0:
            continue
        near = [(abs(table.at[r, key] - own), r) for r in table.index
                if r[:-1] == ix[:-1] and info[r[-1]].base == REHEARSAL
                and abs(table.at[r, key] - own) <= EQUAL_BYTES * own]
        if near:
            out[ix] = min(near, key=lambda pair: pair[0])[1]
    return out


# ---------------------------------------------------------------------------------------------------
# The front page: final accuracy per method and scenario


def _budgets(runs: pd.DataFrame) -> pd.Series:
    """Per run name, its memory budget in bytes: the mean over seeds, which differ when the budget matched
    another method's bytes seed by seed (`memory_budget=match:hywu`); NaN without one."""
    if "memory_budget_bytes" not in runs:
        return pd.Series(np.nan, index=pd.Index(runs["strategy"].unique()))
    return runs.groupby("strategy", sort=False)["memory_budget_bytes"].mean().round()


def budget(runs: pd.DataFrame) -> float | None:
    """The memory budget of a scenario's comparison, or None: the one most plain strategies (not variants)
    were given, then most run names, then the largest. A grid `hywu,replay,replay[memory_budget=1MiB,2MiB]`
    with `memory_budget=match:hywu` is a comparison at hywu's bytes, its variants the frontier around it."""
    budgets = _budgets(runs).dropna()
    if budgets.empty:
        return None
    bases = (runs.groupby("strategy", sort=False)["base"].first() if "base" in runs
             else pd.Series(dtype=object)).reindex(budgets.index)
    plain = pd.Series([bool(pd.isna(b) or b == n) for n, b in bases.items()], index=budgets.index)
    key = {at: ((plain & (budgets == at)).sum(), (budgets == at).sum(), at) for at in budgets.unique()}
    return float(max(key, key=key.get))


def _pick(names: list[str], runs: pd.DataFrame, base: str, at: float | None) -> str | None:
    """The run name that stands for `base` at budget `at`: sized first, then the base itself, then order;
    a base without a run at the budget is shown by its unbudgeted run (e.g. the method others matched)."""
    budgets = _budgets(runs)
    sized = {n: "budget_status" in runs and (runs.loc[runs["strategy"] == n, "budget_status"] == "sized").all()
             for n in names}
    pool = [n for n in names if budgets.get(n) == at] or [n for n in names if pd.isna(budgets.get(n))]
    if not pool:
        return None
    return min(pool, key=lambda n: (not sized[n], n != base))


def headline(per_run: pd.DataFrame, scenarios: list[str], info: Mapping[str, Method],
             value: str = "acc") -> tuple[pd.DataFrame, dict[str, float | None]]:
    """One row per (row label, scenario): the run standing for it, mean with CI, tie with the best.

    Where a scenario's runs were given memory budgets, a row is a base strategy and its run is the variant
    at the common budget (`budget`); elsewhere every run name is its own row."""
    rows, budgets = [], {}
    for scenario in scenarios:
        runs = per_run[per_run["scenario"] == scenario]
        names = order(runs["strategy"], info)
        at = budgets[scenario] = budget(runs)
        if at is None:
            chosen = {n: n for n in names}
        else:
            bases = list(dict.fromkeys(info[n].base for n in names))
            picks = {b: _pick([n for n in names if info[n].base == b], runs, b, at) for b in bases}
            chosen = {b: n for b, n in picks.items() if n is not None}
        ranked = [n for n in chosen.values() if info[n].ranked]
        ties = stats.ties_with_best(per_seed(runs, value, ranked), True) if len(ranked) >= 2 else {}
        for label, name in chosen.items():
            sub = runs[runs["strategy"] == name]
            ci = stats.mean_ci(sub[value].to_numpy(dtype=float))
            tie = ties.get(name)
            rows.append({"row": label, "scenario": scenario, "strategy": name, "role": info[name].role,
                         "mean": ci.mean, "ci_lo": ci.lo, "ci_hi": ci.hi, "n_seeds": ci.n,
                         "p": tie.p if tie else math.nan, "tied": bool(tie and tie.tied),
                         "test": tie.test if tie else "none",
                         "budget_status": budget_status(sub["budget_status"]) if "budget_status" in sub else ""})
    columns = ["row", "scenario", "strategy", "role", "mean", "ci_lo", "ci_hi", "n_seeds", "p", "tied", "test",
               "budget_status"]
    return pd.DataFrame(rows, columns=columns), budgets
