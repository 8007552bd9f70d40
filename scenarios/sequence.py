"""Streams of experiences from several datasets: `mixed`, and `sequence`, declared in a TOML file.

`mixed`: the experiences of one dataset, then of the next (default digits, then Fashion-MNIST), all resized
to a common shape: new tasks arriving after the model has shipped. Each dataset's classes keep their own
outputs (digits 0-9, Fashion-MNIST 10-19); `experiences_per_dataset` cuts each dataset into class groups.

`sequence`: a stream declared in a TOML file (`--set scenario.path=FILE`), checked and resolved by
`sequence_file.py` (the format is documented there). Experiences with users carry the same token and
extra input channel as the personalization streams.
"""

from __future__ import annotations

from typing import Any

import torch

from hywu_bench.config import RunSpec
from hywu_bench.data import ExperienceInfo, ExperienceTensors, Scenario, ScenarioInfo, make_scenario
from hywu_bench.errors import UserError
from scenarios import transforms as T
from scenarios.catalog import MixedOptions, SequenceOptions
from scenarios.datasets import TensorData, load_dataset
from scenarios.drift import subsample
from scenarios.personalization import with_user
from scenarios.sequence_file import load_sequence


def common_shape(datasets: list[TensorData], size: int) -> tuple[int, int, int]:
    channels = max(d.input_shape[0] for d in datasets)
    side = size or max(max(d.input_shape[1:]) for d in datasets)
    return channels, side, side


def recommended_for(shape: tuple[int, int, int]) -> dict[str, Any]:
    c, h, _ = shape
    if h <= 8:
        return dict(epochs=10, batch_size=32, lr=0.05, backbone="mlp")
    if c == 3:
        return dict(epochs=3, batch_size=32, lr=0.05, backbone="cnn")
    return dict(epochs=5, batch_size=32, lr=0.05, backbone="mlp")


# ---------------------------------------------------------------------------------------------------
# mixed


def build_mixed(spec: RunSpec, options: MixedOptions) -> Scenario:
    data = [load_dataset(name, spec.data_root, spec.download) for name in options.datasets]
    shape = common_shape(data, options.size)
    k = options.experiences_per_dataset
    train, test, infos, offset = [], [], [], 0
    for d in data:
        if d.n_classes % k:
            raise UserError(f"mixed: experiences_per_dataset={k} does not divide the {d.n_classes} classes of {d.name}")
        for g in range(k):
            i = len(infos)
            classes = torch.arange(g * d.n_classes // k, (g + 1) * d.n_classes // k)
            task = i if options.setting == "task" else 0
            parts = []
            for x, y, n, split in ((d.x_train, d.y_train, options.train_per_experience, "train"),
                                   (d.x_test, d.y_test, options.test_per_experience, "test")):
                keep = torch.isin(y, classes)
                xs, ys = subsample(x[keep], y[keep], n, T.generator(spec.seed, "mixed", split, i))
                parts.append(ExperienceTensors(T.resize(xs, shape[1], shape[0]), ys + offset, task))
            train.append(parts[0])
            test.append(parts[1])
            transform = "none" if d.input_shape == shape else f"resize({shape[1]}x{shape[2]}x{shape[0]})"
            infos.append(ExperienceInfo(i, tuple((classes + offset).tolist()), d.name, transform,
                                        n_train=len(parts[0].y), n_test=len(parts[1].y)))
        offset += d.n_classes
    info = ScenarioInfo("mixed", options.setting, offset, shape, tuple(infos), recommended=recommended_for(shape),
                        options=vars(options))
    return make_scenario(train, test, info)


# ---------------------------------------------------------------------------------------------------
# sequence


def _labels(y: torch.Tensor, e: dict[str, Any]) -> torch.Tensor:
    if e["label_map"] is not None:
        y = torch.as_tensor(e["label_map"])[y]
    return y + e["label_offset"]


def build_sequence(spec: RunSpec, options: SequenceOptions) -> Scenario:
    if not options.path:
        raise UserError("scenario 'sequence' needs a file: --set scenario.path=FILE.toml "
                        "(see scenarios/examples/ for two).")
    seq = load_sequence(options.path, spec.seed)
    exps = seq["experiences"]
    data = {e["dataset"]: load_dataset(e["dataset"], spec.data_root, spec.download) for e in exps}
    shape = common_shape(list(data.values()), seq["size"])
    n_users = max((e["user"] for e in exps if e["user"] is not None), default=-1) + 1
    train, test, infos, label_sets = [], [], [], []
    for k, e in enumerate(exps):
        d = data[e["dataset"]]
        if e["classes"] is None:
            e["classes"] = list(range(d.n_classes))
        if max(e["classes"]) >= d.n_classes:
            raise UserError(f"{options.path}: experience {k + 1}: class {max(e['classes'])} is outside "
                            f"{d.name}'s classes 0..{d.n_classes - 1}")
        parts = []
        for x, y, n, split in ((d.x_train, d.y_train, e["train_size"], "train"),
                               (d.x_test, d.y_test, e["test_size"], "test")):
            keep = torch.isin(y, torch.tensor(e["classes"]))
            draw = k if split == "train" else (e["dataset"], tuple(e["classes"]), n)  # shared test images
            xs, ys = subsample(x[keep], y[keep], n, T.generator(spec.seed, "sequence", split, draw))
            xs = T.resize(xs, shape[1], shape[0])
            for t in e["transform"]:
                xs = T.TRANSFORMS[t["name"]].apply(xs, t)
            token = None
            if n_users:
                xs, token = with_user(xs, e["user"], n_users, in_input=True)
            parts.append(ExperienceTensors(xs, _labels(ys, e), 0, token))
        train.append(parts[0])
        test.append(parts[1])
        label_sets.append(tuple(sorted(set(parts[0].y.tolist()) | set(parts[1].y.tolist()))))
        described = " + ".join(T.TRANSFORMS[t["name"]].describe({k_: v for k_, v in t.items() if k_ != "name"})
                               for t in e["transform"]) or "none"
        infos.append(ExperienceInfo(k, label_sets[-1], d.name, described, user=e["user"],
                                    n_train=len(parts[0].y), n_test=len(parts[1].y)))
    setting = seq["setting"]
    if setting == "auto":
        setting = "domain" if len(set(label_sets)) == 1 else "class"
    if setting == "task":
        for k, (tr, te) in enumerate(zip(train, test)):
            tr.task = te.task = k
    n_classes = max(max(s) for s in label_sets) + 1
    input_shape = (shape[0] + 1, shape[1], shape[2]) if n_users else shape
    info = ScenarioInfo(seq["name"], setting, n_classes, input_shape, tuple(infos), condition_dim=max(n_users, 0),
                        recommended=recommended_for(shape), options={**vars(options), "resolved": seq})
    return make_scenario(train, test, info)
