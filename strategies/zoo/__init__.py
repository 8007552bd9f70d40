"""Every strategy Avalanche 0.6.0 ships, by name, on the harness's terms (light: no torch, no Avalanche).

What each name runs is data (`catalogue.py`); its options are generated from Avalanche's signatures
(`options.py`, by `python -m strategies.zoo.generate`); one builder runs them all (`build.py`), with the
special models some need (`models.py`) and the state an Avalanche class keeps on itself (`state.py`).
See docs/avalanche.md for the list, the choices and the validation on split-fmnist.
"""

from __future__ import annotations

from hywu_bench.memory import Budget
from hywu_bench.registry import STRATEGIES
from strategies.zoo.catalogue import METHODS, PLUMBING, RUN_BY, Method
from strategies.zoo.options import NOT_EXPOSED, OPTIONS

RUN_BY_NAME: dict[str, list[str]] = {}
for _cls, _name in RUN_BY.items():
    RUN_BY_NAME.setdefault(_name, []).append(_cls)


def notes(m: Method) -> tuple[str, ...]:
    """The lines `hywu-bench list` prints under the entry."""
    module, _, target = m.target.partition(":")
    out = [f"Avalanche: {', '.join(sorted({target} | set(RUN_BY_NAME.get(m.name, ()))))} (runs {module}.{target})"]
    if m.unavailable:
        return (*out, f"NOT RUNNABLE HERE: {m.unavailable}")
    facts = []
    if m.buffer:
        facts.append(f"buffer: {m.buffer}" + (" (per experience)" if m.buffer_per == "experience" else ""))
    facts.append("data: Avalanche's replay loader" if m.loader == "avalanche" else "data: tensor fast path")
    facts.append(f"resume: refused ({m.resume})" if m.resume else "resume: exact")
    if m.relearn_first:
        facts.append("trains experience 0 after the warm start")
    if m.no_bf16:
        facts.append(f"precision=bf16 refused ({m.no_bf16})")
    out.append("; ".join(facts))
    hidden = [p for p in NOT_EXPOSED[m.name] if p not in PLUMBING] + [f"{k} (set by the harness)" for k in m.fixed]
    if hidden:
        out.append(f"not exposed: {', '.join(hidden)}")
    return tuple(out)


def budget(m: Method) -> Budget | None:
    """How a memory budget sizes the method's buffer (None: it runs unsized and is marked over or under)."""
    if m.buffer is None or m.item_extra is None or m.unavailable:
        return None
    return Budget(m.buffer, per="experience" if m.buffer_per == "experience" else "run", item_extra=m.item_extra,
                  sizer=m.sizer)


def register() -> None:
    """Register every method of the catalogue (called by `strategies/__init__.py`, which sets the display
    order: importing this package alone, e.g. for `catalogue.avalanche_note`, registers nothing)."""
    for m in METHODS:
        help_ = f"{m.help} ({m.paper})" if m.paper and m.paper != "Avalanche" else m.help
        if m.unavailable:
            help_ = f"[cannot run here] {help_}"
        STRATEGIES.register(m.name, help=help_, settings=m.settings, options=OPTIONS[m.name],
                            builder="strategies.zoo.build:" + ("unavailable" if m.unavailable else "build"),
                            bind={"name": m.name}, role=m.role, notes=notes(m), budget=budget(m))
