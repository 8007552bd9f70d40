"""Strategy variants in one grid: `replay[mem_size=50,100,200]` is three runs of replay, stored apart.

    --strategies hywu,replay[mem_size=50,100,200,500,1000]
    --strategies replay[mem_size=100,200;buffer=class,experience]     (a cartesian product: 4 variants)

Inside the brackets, `;` separates keys and `,` separates a key's values; a key is a strategy option or a
RunSpec field (`replay[memory_budget=0.5MiB,1MiB]`, `hywu[lr=1e-3,3e-3]`). Each variant is stored under
its own run name, the strategy's name (or the name given to it with `STRATEGY.name=X`) and one
`-KEYVALUE` per key: `replay-mem_size500`, `replay-mem_size100-bufferclass`. A variant's values win over
`--set` pairs for the same key. Pure parsing: no registry, no torch.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from hywu_bench.errors import UserError

_ITEM = re.compile(r"^([A-Za-z0-9_.+-]+)(?:\[(.*)\])?$", re.S)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+]")  # what a run name may not contain (and '-' joins the parts)


@dataclass(frozen=True)
class Variant:
    strategy: str  # the strategy's name as written
    pairs: tuple[tuple[str, str], ...] = ()  # (key, value as written) of this variant; () for the plain strategy

    @property
    def suffix(self) -> str:
        """'mem_size500-bufferclass': what the run name adds to the strategy's name ('' for none)."""
        return "-".join(f"{key}{_UNSAFE.sub('_', value)}" for key, value in self.pairs)

    def run_name(self, base: str) -> str:
        return f"{base}-{self.suffix}" if self.pairs else base

    @property
    def label(self) -> str:
        """As the user would write this one variant: 'replay[mem_size=500]'."""
        body = ";".join(f"{k}={v}" for k, v in self.pairs)
        return f"{self.strategy}[{body}]" if self.pairs else self.strategy


def split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets: 'hywu,replay[mem_size=1,2]' -> ['hywu', 'replay[mem_size=1,2]']."""
    items, depth, current = [], 0, []
    for ch in text:
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if depth < 0 or depth > 1:
            raise UserError(f"--strategies '{text}' has unbalanced brackets; write e.g. replay[mem_size=100,200].")
        if ch == "," and depth == 0:
            items.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    if depth:
        raise UserError(f"--strategies '{text}' has an unclosed '['; write e.g. replay[mem_size=100,200].")
    items.append("".join(current).strip())
    return [i for i in items if i]


def parse(item: str) -> list[Variant]:
    """One `--strategies` item -> its variants (one for a plain strategy name)."""
    match = _ITEM.match(item.strip())
    if not match:
        raise UserError(f"strategy '{item}' is not a name or a name[KEY=V1,V2;KEY=V3] variant list, "
                        "e.g. replay[mem_size=100,200].")
    name, body = match.group(1), match.group(2)
    if body is None:
        return [Variant(name)]
    axes: list[list[tuple[str, str]]] = []
    for part in (p.strip() for p in body.split(";")):
        key, sep, values = part.partition("=")
        key = key.strip()
        items = [v.strip() for v in values.split(",")]
        if not sep or not key or not all(items):
            raise UserError(f"'{item}': '{part}' should read KEY=V1,V2,..., e.g. replay[mem_size=100,200].")
        if key in (k for axis in axes for k, _ in axis[:1]):
            raise UserError(f"'{item}' names '{key}' twice; give its values once, comma-separated.")
        if key == "name":
            raise UserError(f"'{item}': variants are named for their values; set a base name with {name}.name=X.")
        if len(set(items)) != len(items):
            raise UserError(f"'{item}' lists a value of '{key}' twice.")
        axes.append([(key, v) for v in items])
    return [Variant(name, tuple(combo)) for combo in itertools.product(*axes)]


def parse_all(items: list[str] | str) -> list[Variant]:
    """Every variant of a --strategies value (a string) or a list of items (a suite's `strategies`)."""
    items = split_top_level(items) if isinstance(items, str) else [i for text in items for i in split_top_level(text)]
    if not items:
        raise UserError("--strategies is empty; give a comma-separated list, e.g. --strategies naive,replay,ewc")
    return [v for item in items for v in parse(item)]
