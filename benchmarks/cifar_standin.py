"""Write a CIFAR-10 stand-in: CIFAR-10's python pickles filled with Fashion-MNIST images.

CIFAR-10 cannot be downloaded on an offline machine, but `split-cifar`'s path (the CIFAR loader, 3x32x32
inputs, the reduced ResNet-18 and its Conv2d sites) can still run for real on other images in CIFAR's own
format. This script writes `<out>/cifar-10-batches-py/` (data_batch_1..5 of 10,000 images, test_batch,
batches.meta) from Debian's Fashion-MNIST: the first 50,000 training images and the 10,000 test images, each
28x28 image padded by 2 pixels to 32x32 and repeated over the three colour planes; labels unchanged.

Numbers measured on it are Fashion-MNIST's on a CIFAR-shaped path, never CIFAR-10's: label them as such.

    python benchmarks/cifar_standin.py --out /tmp/standin
    hywu-bench run --scenario split-cifar --strategy hywu --data-root /tmp/standin
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np

from scenarios.datasets import DEBIAN_FASHION_MNIST, read_idx

LABELS = [b"T-shirt/top", b"Trouser", b"Pullover", b"Dress", b"Coat", b"Sandal", b"Shirt", b"Sneaker", b"Bag",
          b"Ankle boot"]


def cifar_rows(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, 3072): CIFAR's row layout, the R, G, B planes of 32x32, here all the same."""
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2)))  # (N, 32, 32)
    return np.repeat(padded[:, None], 3, axis=1).reshape(len(images), -1)


def write(path: Path, rows: np.ndarray, labels: np.ndarray, name: str) -> None:
    batch = {b"batch_label": f"{name} (Fashion-MNIST stand-in)".encode(), b"labels": labels.tolist(),
             b"data": rows, b"filenames": [f"fmnist_{i}.png".encode() for i in range(len(labels))]}
    with path.open("wb") as fh:
        pickle.dump(batch, fh, protocol=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="data root to write cifar-10-batches-py into")
    parser.add_argument("--source", type=Path, default=DEBIAN_FASHION_MNIST, help="Fashion-MNIST's idx folder")
    args = parser.parse_args()
    folder = args.out / "cifar-10-batches-py"
    if folder.exists():
        raise SystemExit(f"error: '{folder}' exists; pass another --out (nothing was overwritten).")
    x_tr = read_idx(args.source / "train-images-idx3-ubyte.gz", 3)[:50_000]
    y_tr = read_idx(args.source / "train-labels-idx1-ubyte.gz", 1)[:50_000]
    x_te = read_idx(args.source / "t10k-images-idx3-ubyte.gz", 3)
    y_te = read_idx(args.source / "t10k-labels-idx1-ubyte.gz", 1)
    folder.mkdir(parents=True)
    for i, part in enumerate(np.array_split(np.arange(len(y_tr)), 5)):  # 10,000 images each from Fashion-MNIST
        write(folder / f"data_batch_{i + 1}", cifar_rows(x_tr[part]), y_tr[part], f"training batch {i + 1} of 5")
    write(folder / "test_batch", cifar_rows(x_te), y_te, "testing batch 1 of 1")
    with (folder / "batches.meta").open("wb") as fh:
        pickle.dump({b"label_names": LABELS, b"num_cases_per_batch": 10_000, b"num_vis": 3072}, fh, protocol=2)
    print(f"wrote a CIFAR-10 stand-in (Fashion-MNIST images, labelled so) to {folder}")


if __name__ == "__main__":
    main()
