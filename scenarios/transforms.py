"""Image transforms for drifting streams: pure functions on float batches (N, C, H, W) in [0, 1].

Every function returns a new tensor (the loaded datasets are shared and must not be modified in place),
works on a whole batch at once, and draws its randomness only from an explicit seed, so a stream is the
same for the same run seed on any machine.

- `permute_pixels(x, perm)`: one fixed pixel permutation for every image and channel (permuted MNIST,
  Goodfellow et al. 2013; Kirkpatrick et al. 2017). `pixel_permutation(h, w, seed)` draws it.
- `rotate(x, degrees)`: counter-clockwise, about the image centre, bilinear, zero outside the image;
  exact (`torch.rot90`) for multiples of 90 degrees.
- `gaussian_blur(x, sigma)`: separable Gaussian, kernel radius ceil(3 sigma), edges replicated.
- `add_noise(x, std, seed)`: additive Gaussian noise, clipped to [0, 1].
- `adjust_contrast(x, factor)`: towards each image's mean (0: flat grey, 1: unchanged, > 1: stronger).
- `resize(x, size, channels)`: to size x size and 1 or 3 channels (for streams mixing datasets).

`TRANSFORMS` names those a task-sequence file may use, with their parameters, for validation.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor
from torch.nn import functional as F

_CHUNK = 4096  # images per grid_sample/conv call: bounds the temporary memory on full datasets


def generator(seed: int, *keys: Any) -> torch.Generator:
    """A torch generator seeded by the run seed and a purpose (`"permute", 3`), stable across processes."""
    tag = zlib.crc32(repr(keys).encode())  # not hash(): that is salted per process for str
    return torch.Generator().manual_seed((seed * 1_000_003 + tag) % (2**63 - 1))


def _chunked(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    if x.shape[0] <= _CHUNK:
        return fn(x)
    return torch.cat([fn(part) for part in x.split(_CHUNK)])


def pixel_permutation(h: int, w: int, seed: int) -> Tensor:
    return torch.randperm(h * w, generator=generator(seed, "permute"))  # (H*W,)


def permute_pixels(x: Tensor, perm: Tensor) -> Tensor:
    n, c, h, w = x.shape
    if perm.shape != (h * w,):
        raise ValueError(f"permutation of {perm.numel()} pixels does not fit {h}x{w} images")
    return x.flatten(2)[:, :, perm].reshape(n, c, h, w)  # (N, C, H, W)


def rotate(x: Tensor, degrees: float) -> Tensor:
    """Counter-clockwise rotation of square images (as displayed, row 0 at the top)."""
    n, c, h, w = x.shape
    if h != w:
        raise ValueError(f"rotate needs square images, got {h}x{w}")
    quarter = degrees / 90.0
    if quarter == round(quarter):
        return torch.rot90(x, int(round(quarter)) % 4, dims=(2, 3)).clone()
    rad = math.radians(degrees)
    cos, sin = math.cos(rad), math.sin(rad)
    # affine_grid maps output (x, y) (x right, y down, in [-1, 1]) to the input point sampled there.
    theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype)  # (2, 3)

    def one(part: Tensor) -> Tensor:
        grid = F.affine_grid(theta.expand(part.shape[0], 2, 3), list(part.shape), align_corners=False)  # (B, H, W, 2)
        return F.grid_sample(part, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    return _chunked(one, x)


def gaussian_kernel(sigma: float) -> Tensor:
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()  # (2 radius + 1,)


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    if sigma < 0:
        raise ValueError(f"blur sigma must be >= 0 (got {sigma})")
    if sigma == 0:
        return x.clone()
    n, c, h, w = x.shape
    k = gaussian_kernel(sigma).to(x.dtype)
    r = (k.numel() - 1) // 2

    def one(part: Tensor) -> Tensor:
        flat = part.reshape(-1, 1, h, w)  # (B*C, 1, H, W): every channel blurred on its own
        flat = F.conv2d(F.pad(flat, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
        flat = F.conv2d(F.pad(flat, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
        return flat.reshape(part.shape)

    return _chunked(one, x)


def add_noise(x: Tensor, std: float, seed: int) -> Tensor:
    if std < 0:
        raise ValueError(f"noise std must be >= 0 (got {std})")
    noise = torch.randn(x.shape, generator=generator(seed, "noise"), dtype=x.dtype)
    return (x + std * noise).clamp_(0.0, 1.0)


def adjust_contrast(x: Tensor, factor: float) -> Tensor:
    if factor < 0:
        raise ValueError(f"contrast factor must be >= 0 (got {factor})")
    mean = x.mean(dim=(1, 2, 3), keepdim=True)  # (N, 1, 1, 1)
    return (mean + factor * (x - mean)).clamp_(0.0, 1.0)


def resize(x: Tensor, size: int, channels: int) -> Tensor:
    """To (N, channels, size, size): bilinear (antialiased when shrinking); grey <-> RGB by luminance."""
    n, c, h, w = x.shape
    if c != channels:
        if c == 1 and channels == 3:
            x = x.expand(n, 3, h, w)
        elif c == 3 and channels == 1:
            weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype).view(1, 3, 1, 1)
            x = (x * weights).sum(1, keepdim=True)
        else:
            raise ValueError(f"cannot convert {c}-channel images to {channels} channels")
    if (h, w) == (size, size):
        return x.clone()
    return _chunked(lambda part: F.interpolate(part, size=(size, size), mode="bilinear", align_corners=False,
                                               antialias=size < max(h, w)).clamp_(0.0, 1.0), x)


# ---------------------------------------------------------------------------------------------------
# Transforms by name, for task-sequence files: parameters, validation and a short description.


@dataclass(frozen=True)
class Param:
    kind: type  # int or float
    required: bool = True
    minimum: float | None = None
    help: str = ""


@dataclass(frozen=True)
class TransformSpec:
    name: str
    params: dict[str, Param]
    apply: Callable[[Tensor, dict[str, Any]], Tensor]  # (x, resolved params) -> x
    seeded: bool = False  # takes a `seed` that defaults to one derived from the run seed

    def describe(self, params: dict[str, Any]) -> str:
        shown = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()]
        return f"{self.name}({', '.join(shown)})"


def _apply_permute(x: Tensor, p: dict[str, Any]) -> Tensor:
    return permute_pixels(x, pixel_permutation(x.shape[2], x.shape[3], p["seed"]))


TRANSFORMS: dict[str, TransformSpec] = {
    "permute": TransformSpec("permute", {"seed": Param(int, False, 0, "permutation seed")}, _apply_permute, True),
    "rotate": TransformSpec("rotate", {"degrees": Param(float, help="counter-clockwise angle")},
                            lambda x, p: rotate(x, p["degrees"])),
    "blur": TransformSpec("blur", {"sigma": Param(float, minimum=0, help="Gaussian sigma in pixels")},
                          lambda x, p: gaussian_blur(x, p["sigma"])),
    "noise": TransformSpec("noise", {"std": Param(float, minimum=0, help="noise standard deviation"),
                                     "seed": Param(int, False, 0, "noise seed")},
                           lambda x, p: add_noise(x, p["std"], p["seed"]), True),
    "contrast": TransformSpec("contrast", {"factor": Param(float, minimum=0, help="0 flat, 1 unchanged")},
                              lambda x, p: adjust_contrast(x, p["factor"])),
}
