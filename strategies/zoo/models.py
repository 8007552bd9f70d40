"""The models some Avalanche methods need, built from the harness backbone (after its warm start).

Every harness backbone has `features(x)` (the penultimate representation) and a Linear `head`:

| adapter             | what the method gets                                                              |
|---------------------|-----------------------------------------------------------------------------------|
| `features` (@)      | `Features(backbone)`: the backbone up to its penultimate layer (ER-AML, SLDA)      |
| icarl               | feature extractor `Features(backbone)` + classifier `backbone.head`; Avalanche's   |
|                     | ICaRL puts them in a TrainEvalModel with its nearest-mean-of-exemplars classifier  |
| scr                 | Avalanche's SCRModel: `Features(backbone)` + a projection head Linear(H, H) -> ReLU |
|                     | -> Linear(H, 128) (SCR's own), classified by class means at test time (scores     |
|                     | padded to all classes)                                                            |
| base-model          | `HarnessModel(backbone)`: `forward(x, task_labels)` and `get_features(x)`, as     |
|                     | LaMAML and LFL call a model                                                       |
| stores-features     | `StoresFeatures(backbone)`: the same forward, keeping the penultimate features in  |
|                     | `.features`, as FeatureDistillationPlugin reads them                             |
| packnet             | Avalanche's PackNetModel wrapping the backbone (a weight mask per task)           |
| pnn                 | Avalanche's PNN: its own MLP columns (two layers of the backbone's hidden width;  |
|                     | not the warm-started backbone, so it learns experience 0 itself), its logits      |
|                     | padded to all classes                                                             |
| generative-replay   | a generator strategy: Avalanche's MlpVAE for the scenario's input shape (its      |
|                     | default is fixed to 28x28), trained by VAETraining with Avalanche's settings      |
|                     | (Adam lr 0.01, weight decay 1e-4, nhid 2), quiet                                 |

The parameters the backbone shares with these wrappers stay the same tensors, so the optimizer, the
shared warm start and the checkpoints see one model.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from avalanche.models import PNN, SCRModel
from avalanche.models.base_model import BaseModel
from torch import Tensor, nn
from torch.nn import functional as F

from hywu_bench.training import TrainingSetup, quiet_evaluator


class Features(nn.Module):
    """The backbone up to its penultimate representation: (B, ...) -> (B, H)."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone.features(x)  # (B, H)


class StoresFeatures(nn.Module):
    """The backbone's forward, keeping the penultimate features of the last call in `self.features`."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.features: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        self.features = self.backbone.features(x)  # (B, H)
        return self.backbone.head(self.features)  # (B, n_classes)


def feature_dim(backbone: nn.Module, input_shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        return int(Features(backbone)(torch.zeros(1, *input_shape)).shape[1])


def adapt(kind: str | None, backbone: nn.Module, setup: TrainingSetup, args: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for the Avalanche class: the model (or its parts) for adapter `kind`; `args` are
    the method's other arguments."""
    if kind is None:
        return {"model": backbone}
    if kind == "icarl":
        return {"feature_extractor": Features(backbone), "classifier": backbone.head}
    if kind == "base-model":
        return {"model": HarnessModel(backbone)}
    if kind == "stores-features":
        return {"model": StoresFeatures(backbone)}
    if kind == "scr":
        h = feature_dim(backbone, setup.info.input_shape)
        projection = nn.Sequential(nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 128))
        scr = HarnessSCRModel(Features(backbone), projection)
        scr.n_classes = setup.info.n_classes
        return {"model": scr}
    if kind == "packnet":
        from avalanche.models.packnet import PackNetModel

        return {"model": PackNetModel(backbone)}
    if kind == "pnn":
        h = feature_dim(backbone, setup.info.input_shape)
        pnn = HarnessPNN(num_layers=2, in_features=math.prod(setup.info.input_shape), hidden_features_per_column=h)
        pnn.n_classes = setup.info.n_classes
        return {"model": pnn}
    if kind == "generative-replay":
        return {"model": backbone, "generator_strategy": _vae_generator(setup, args)}
    raise ValueError(f"unknown model adapter {kind!r}")


def _vae_generator(setup: TrainingSetup, args: dict[str, Any]) -> Any:
    """What Avalanche's GenerativeReplay builds by default, for this scenario's input shape and quiet."""
    from avalanche.models import MlpVAE
    from avalanche.models.generator import VAE_loss
    from avalanche.training import VAETraining
    from avalanche.training.plugins import GenerativeReplayPlugin

    generator = MlpVAE(setup.info.input_shape, nhid=2, device=setup.device)
    optimizer = torch.optim.Adam([p for p in generator.parameters() if p.requires_grad], lr=0.01, weight_decay=1e-4)
    return VAETraining(model=generator, optimizer=optimizer, criterion=VAE_loss, train_mb_size=setup.batch_size,
                       train_epochs=setup.epochs, eval_mb_size=setup.spec.eval_batch_size, device=setup.device,
                       plugins=[GenerativeReplayPlugin(**{k: v for k, v in args.items() if k in _REPLAY_ARGS})],
                       evaluator=quiet_evaluator())


_REPLAY_ARGS = ("replay_size", "increasing_replay_size", "is_weighted_replay", "weight_replay_loss_factor",
                "weight_replay_loss")


class HarnessModel(nn.Module, BaseModel):
    """The backbone as Avalanche's BaseModel-style methods call it: `forward(x, task_labels)` (the task label
    ignored: one head for all tasks, the runner masks logits in the task-incremental setting) and
    `get_features(x)` (LFL's penultimate features)."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, x: Tensor, task_labels: Tensor | None = None) -> Tensor:
        return self.backbone(x)  # (B, n_classes)

    def get_features(self, x: Tensor) -> Tensor:
        return self.backbone.features(x)  # (B, H)


class HarnessPNN(PNN):
    """Avalanche's PNN with its logits padded to all the scenario's classes (its task heads grow to the
    largest label seen), as the runner's task mask expects."""

    n_classes: int = 0

    def forward(self, x: Tensor, task_labels: Tensor) -> Tensor:
        return pad_classes(super().forward(x.flatten(1), task_labels), self.n_classes)


class HarnessSCRModel(SCRModel):
    """Avalanche's SCRModel with its test-time scores (nearest class mean, over the classes seen so far)
    padded to all the scenario's classes."""

    n_classes: int = 0

    def forward(self, x: Tensor) -> Tensor:
        out = super().forward(x)
        return out if self.training else pad_classes(out, self.n_classes)


def pad_classes(scores: Tensor, n_classes: int) -> Tensor:
    """(B, C) -> (B, n_classes): classes a model has no score for yet get one that never wins."""
    return F.pad(scores, (0, n_classes - scores.shape[1]), value=-1e4)
