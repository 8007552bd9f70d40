"""Backbones and their adapter sites.

Every backbone ends in a Linear called `head`; `adapter_sites` names the hidden Linear/Conv2d layers
that HY-WU and the LoRA family may adapt (the head is trained directly, never adapted). `features(x)`
returns the penultimate representation, which condition encoders and probes use.

- `mlp`: flatten -> fc1 -> ReLU -> fc2 -> ReLU -> head (784-256-256-10 on 28x28 inputs).
- `cnn`: two conv blocks and one hidden Linear, for 28x28 and 32x32 images.
- `resnet18`: the reduced ResNet-18 (20 base filters) of GEM / A-GEM (Lopez-Paz & Ranzato 2017;
  Chaudhry et al. 2019) for CIFAR.

`build_backbone(name, info, seed)` gives bit-identical initial weights for the same (name, info, seed),
whatever strategy will use them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hywu_bench.errors import UserError
from hywu_bench.settings import default_backbone

__all__ = ["BACKBONES", "build_backbone", "default_backbone"]

BACKBONES = ("mlp", "cnn", "resnet18")


class MLP(nn.Module):
    adapter_sites = ("fc1", "fc2")

    def __init__(self, input_shape: tuple[int, ...], n_classes: int, hidden: int = 256):
        super().__init__()
        d_in = math.prod(input_shape)
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, n_classes)

    def features(self, x: Tensor) -> Tensor:
        h = F.relu(self.fc1(x.flatten(1)))  # (B, H)
        return F.relu(self.fc2(h))  # (B, H)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))  # (B, n_classes)


class SmallCNN(nn.Module):
    adapter_sites = ("conv1", "conv2", "fc1")

    def __init__(self, input_shape: tuple[int, ...], n_classes: int, width: int = 32, hidden: int = 256):
        super().__init__()
        c, h, w = input_shape
        self.conv1 = nn.Conv2d(c, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.fc1 = nn.Linear(2 * width * (h // 4) * (w // 4), hidden)
        self.head = nn.Linear(hidden, n_classes)

    def features(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (B, W, H/2, W/2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # (B, 2W, H/4, W/4)
        return F.relu(self.fc1(x.flatten(1)))  # (B, hidden)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ReducedResNet18(nn.Module):
    """ResNet-18 with nf=20 base filters, as in GEM/A-GEM's CIFAR experiments (about 1.1M parameters)."""

    def __init__(self, input_shape: tuple[int, ...], n_classes: int, nf: int = 20):
        super().__init__()
        c = input_shape[0]
        self.conv1 = nn.Conv2d(c, nf, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(nf)
        blocks, c_in = [], nf
        for mult, stride in [(1, 1), (2, 2), (4, 2), (8, 2)]:
            layer = nn.Sequential(BasicBlock(c_in, nf * mult, stride), BasicBlock(nf * mult, nf * mult, 1))
            blocks.append(layer)
            c_in = nf * mult
        self.layer1, self.layer2, self.layer3, self.layer4 = blocks
        self.head = nn.Linear(nf * 8, n_classes)
        self.adapter_sites = ("layer4.1.conv2", "layer4.1.conv1", "layer4.0.conv2")

    def features(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)  # (B, 8 nf)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def build_backbone(name: str, input_shape: tuple[int, ...], n_classes: int, seed: int) -> nn.Module:
    if name == "auto":
        name = default_backbone(input_shape)
    if name not in BACKBONES:
        raise UserError(f"unknown backbone '{name}'; use one of {', '.join(BACKBONES)} or auto.")
    if name == "cnn" and min(input_shape[1:]) < 8:
        raise UserError(f"backbone 'cnn' needs images of at least 8x8 (got {input_shape}); use mlp.")
    cls = {"mlp": MLP, "cnn": SmallCNN, "resnet18": ReducedResNet18}[name]
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return cls(input_shape, n_classes)
    finally:
        torch.random.set_rng_state(generator_state)


def trainable_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
