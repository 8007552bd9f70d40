"""A task-sequence file: parsed, checked and resolved before any data is loaded (used by `sequence.py`
and, to validate `--set scenario.path=FILE`, by the scenario catalogue).

`sequence`: a stream a researcher writes without Python (`--set scenario.path=FILE`). The file::

    name = "rotating-digits"   # optional: the label in tables (default: the file name)
    setting = "auto"           # auto | class | domain | task; auto: domain when every experience has the
                               # same label set, else class
    size = 0                   # common image side (0: the largest); channels follow the first dataset with 3
    [defaults]                 # optional: keys every [[experience]] gets unless it sets them
    dataset = "digits"

    [[experience]]
    dataset = "digits"         # digits, mnist, fashion-mnist (fmnist), cifar10, cifar100
    classes = [0, 1, 2]        # optional subset of the dataset's classes (default: all)
    transform = [{ name = "rotate", degrees = 30 }, { name = "blur", sigma = 0.5 }]  # or "permute", or one table
    user = 0                   # optional: a user id (then every experience needs one); one-hot condition token
    label_map = [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]  # optional: class y is labelled label_map[y] (or a table {"3" = 5})
    label_offset = 0           # optional: added to every label (e.g. 10 for a second dataset in one head)
    train_size = 500           # optional: images subsampled per experience (0: all); test_size likewise

Transforms and their parameters: permute (seed), rotate (degrees), blur (sigma), noise (std, seed), contrast
(factor); an omitted seed is derived from the run seed and the experience number. The file is checked
before anything is loaded: an unknown key, dataset or transform, a missing parameter, or a class outside
the dataset is an error naming the experience and its line. Each experience draws fresh training images;
experiences with the same dataset, classes and test_size share their test images. The resolved sequence
(every default, seed and label map filled in) and the file's SHA-256 go into `ScenarioInfo.options`, saved
with the results.
Experiences with users carry the same token and extra input channel as the personalization streams.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from hywu_bench.config import load_toml
from hywu_bench.errors import UserError
from hywu_bench.registry import did_you_mean
from scenarios import transforms as T
from scenarios.datasets import ALIASES, LOADERS

KNOWN_CLASSES = {"digits": 10, "mnist": 10, "fashion-mnist": 10, "cifar10": 10, "cifar100": 100}
TOP_KEYS = ("name", "setting", "size", "defaults", "experience")
EXPERIENCE_KEYS = ("dataset", "classes", "transform", "user", "label_map", "label_offset", "train_size", "test_size")
DEFAULT_SIZES = {"digits": (0, 0)}  # others: 2000 train / 1000 test images per experience on a CPU



class SequenceFile:
    """A parsed task-sequence file, and where things are in it (for errors that name the line)."""

    def __init__(self, path: Path):
        self.path = path
        self.text = path.read_text(encoding="utf-8") if path.is_file() else ""
        self.data = load_toml(path)
        self.lines = self.text.splitlines()
        self.headers = [i + 1 for i, line in enumerate(self.lines) if re.match(r"\s*\[\[\s*experience\s*\]\]", line)]

    def line_of(self, k: int | None, key: str | None = None) -> int | None:
        """1-based line of experience k's header (or of `key` inside it, or of a top-level key)."""
        if k is None:
            start, stop = 0, (self.headers[0] - 1 if self.headers else len(self.lines))
        elif k < len(self.headers):
            start, stop = self.headers[k] - 1, (self.headers[k + 1] - 1 if k + 1 < len(self.headers)
                                                else len(self.lines))
        else:  # an inline array of tables: no headers to point at
            return None
        if key is None:
            return start + 1
        for i in range(start, stop):
            if re.match(rf"\s*{re.escape(key)}\s*=", self.lines[i]):
                return i + 1
        return start + 1 if k is not None else None

    def error(self, message: str, k: int | None = None, key: str | None = None) -> UserError:
        line = self.line_of(k, key)
        where = f"{self.path}" + (f", line {line}" if line else "")
        what = f"experience {k + 1}: " if k is not None else ""
        return UserError(f"{where}: {what}{message}")


def _canonical_dataset(name: Any, f: SequenceFile, k: int) -> str:
    if not isinstance(name, str):
        raise f.error(f"dataset must be a name in quotes, got {name!r}", k, "dataset")
    key = ALIASES.get(name, name)
    if key not in LOADERS:
        valid = sorted(LOADERS) + sorted(ALIASES)
        raise f.error(f"unknown dataset '{name}'.{did_you_mean(name, valid)} Valid: {', '.join(valid)}.", k, "dataset")
    return key


def _int(value: Any, what: str, f: SequenceFile, k: int, key: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise f.error(f"{what} must be an integer >= {minimum}, got {value!r}", k, key)
    return value


def _transforms(value: Any, f: SequenceFile, k: int, seed: int) -> list[dict[str, Any]]:
    items = value if isinstance(value, list) else [value]
    out = []
    for j, item in enumerate(items):
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict) or "name" not in item:
            raise f.error(f"transform {j + 1} must be a name or a table with a name, e.g. "
                          f"{{ name = \"rotate\", degrees = 30 }}; got {item!r}", k, "transform")
        name = item["name"]
        spec = T.TRANSFORMS.get(name)
        if spec is None:
            valid = sorted(T.TRANSFORMS)
            raise f.error(f"unknown transform '{name}'.{did_you_mean(str(name), valid)} Valid: {', '.join(valid)}.",
                          k, "transform")
        params: dict[str, Any] = {}
        for key, value_ in item.items():
            if key == "name":
                continue
            if key not in spec.params:
                raise f.error(f"transform '{name}' has no parameter '{key}'.{did_you_mean(key, list(spec.params))} "
                              f"Its parameters: {', '.join(spec.params)}.", k, "transform")
            p = spec.params[key]
            ok = (isinstance(value_, (int, float)) and not isinstance(value_, bool)
                  and (p.kind is float or isinstance(value_, int)))
            if not ok or (p.minimum is not None and value_ < p.minimum):
                bound = f" >= {p.minimum:g}" if p.minimum is not None else ""
                raise f.error(f"transform '{name}': {key} must be "
                              f"a{'n integer' if p.kind is int else ' number'}{bound}, "
                              f"got {value_!r}", k, "transform")
            params[key] = p.kind(value_)
        missing = [key for key, p in spec.params.items() if p.required and key not in params]
        if missing:
            raise f.error(f"transform '{name}' needs {', '.join(missing)} ({spec.params[missing[0]].help})",
                          k, "transform")
        if spec.seeded and "seed" not in params:
            params["seed"] = seed * 7919 + 97 * k + j  # fixed by the run seed, the experience and the position
        out.append({"name": name, **params})
    return out


def _label_map(value: Any, n_classes: int | None, f: SequenceFile, k: int) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, list):
        if n_classes is not None and len(value) != n_classes:
            raise f.error(f"label_map has {len(value)} entries but the dataset has {n_classes} classes", k, "label_map")
        return [_int(v, "label_map entries", f, k, "label_map") for v in value]
    if isinstance(value, dict):
        if n_classes is None:
            raise f.error("a label_map table needs a dataset with a known class count; give a list", k, "label_map")
        out = list(range(n_classes))
        for key, v in value.items():
            if not key.isdigit() or int(key) >= n_classes:
                raise f.error(f"label_map key '{key}' is not a class of the dataset (0..{n_classes - 1})",
                              k, "label_map")
            out[int(key)] = _int(v, "label_map values", f, k, "label_map")
        return out
    raise f.error(f"label_map must be a list or a table, got {value!r}", k, "label_map")


def resolve_experience(raw: Any, f: SequenceFile, k: int, defaults: dict[str, Any], seed: int) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise f.error(f"must be a table of keys, got {raw!r}", k)
    entry = {**defaults, **raw}
    for key in entry:
        if key not in EXPERIENCE_KEYS:
            raise f.error(f"unknown key '{key}'.{did_you_mean(key, list(EXPERIENCE_KEYS))} "
                          f"Valid keys: {', '.join(EXPERIENCE_KEYS)}.", k, key)
    if "dataset" not in entry:
        raise f.error("names no dataset; add e.g. dataset = \"digits\" (or set it under [defaults])", k)
    dataset = _canonical_dataset(entry["dataset"], f, k)
    n_classes = KNOWN_CLASSES.get(dataset)
    classes = entry.get("classes")
    if classes is not None:
        if not isinstance(classes, list) or not classes:
            raise f.error(f"classes must be a non-empty list of class numbers, got {classes!r}", k, "classes")
        classes = [_int(c, "classes", f, k, "classes") for c in classes]
        outside = [c for c in classes if n_classes is not None and c >= n_classes]
        if outside:
            raise f.error(f"class {outside[0]} is outside {dataset}'s classes 0..{n_classes - 1}", k, "classes")
        if len(set(classes)) != len(classes):
            raise f.error(f"classes lists a class twice: {classes}", k, "classes")
    elif n_classes is not None:
        classes = list(range(n_classes))
    train_default, test_default = DEFAULT_SIZES.get(dataset, (2000, 1000))
    return {
        "dataset": dataset,
        "classes": classes,  # None only for a plugin's dataset of unknown size: filled in when loaded
        "transform": _transforms(entry.get("transform", []), f, k, seed),
        "user": None if entry.get("user") is None else _int(entry["user"], "user", f, k, "user"),
        "label_map": _label_map(entry.get("label_map"), n_classes, f, k),
        "label_offset": _int(entry.get("label_offset", 0), "label_offset", f, k, "label_offset"),
        "train_size": _int(entry.get("train_size", train_default), "train_size", f, k, "train_size"),
        "test_size": _int(entry.get("test_size", test_default), "test_size", f, k, "test_size"),
    }


def load_sequence(path: str | Path, seed: int = 0) -> dict[str, Any]:
    """The file checked and resolved: {name, setting, size, sha256, experiences: [...]}."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"sequence file '{path}' does not exist; pass the path of a .toml file.")
    f = SequenceFile(path)
    for key in f.data:
        if key not in TOP_KEYS:
            raise f.error(f"unknown top-level key '{key}'.{did_you_mean(key, list(TOP_KEYS))} "
                          f"Valid keys: {', '.join(TOP_KEYS)}.", None, key)
    raw = f.data.get("experience")
    if not isinstance(raw, list) or not raw:
        raise f.error("declares no experiences; add one or more [[experience]] tables")
    defaults = f.data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise f.error("defaults must be a table ([defaults])", None, "defaults")
    bad = [key for key in defaults if key not in EXPERIENCE_KEYS]
    if bad:
        raise f.error(f"[defaults] has unknown key '{bad[0]}'. Valid keys: {', '.join(EXPERIENCE_KEYS)}.")
    experiences = [resolve_experience(e, f, k, defaults, seed) for k, e in enumerate(raw)]
    users = [e["user"] is not None for e in experiences]
    if any(users) and not all(users):
        k = users.index(False)
        raise f.error("has no user, but other experiences do; give every experience a user, or none", k)
    setting = f.data.get("setting", "auto")
    if setting not in ("auto", "class", "domain", "task"):
        raise f.error(f"setting must be auto, class, domain or task, got {setting!r}", None, "setting")
    size = f.data.get("size", 0)
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise f.error(f"size must be an integer >= 0 (0: the largest image), got {size!r}", None, "size")
    name = f.data.get("name", path.stem)
    if not isinstance(name, str):
        raise f.error(f"name must be a string, got {name!r}", None, "name")
    return {"name": name, "setting": setting, "size": size, "path": str(path),
            "sha256": hashlib.sha256(f.text.encode()).hexdigest(), "experiences": experiences}


