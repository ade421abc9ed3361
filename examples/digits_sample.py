"""Write a few held-out digits as an .npy batch for `nindsl run`, and their labels beside it.

    python examples/digits_sample.py OUT.npy [COUNT]     # writes OUT.npy and OUT.labels.npy
    nindsl run MODEL --input OUT.npy --labels OUT.labels.npy

Uses the same fixed held-out split as `nindsl train`, so these images were not trained on.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np

import nindsl
from nindsl.torch.data import load_data
from nindsl.kernel.io import atomic_write_bytes

SPEC = Path(__file__).resolve().parent.parent / "specs" / "nin_digits.nin"


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("digits_sample.npy")
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    data = load_data(nindsl.load(SPEC))
    out.parent.mkdir(parents=True, exist_ok=True)
    labels = out.with_suffix(".labels.npy")
    for path, array in ((out, data.val_images[:count]), (labels, data.val_labels[:count])):
        buffer = io.BytesIO()
        np.save(buffer, array)
        atomic_write_bytes(path, buffer.getvalue())
    print(f"wrote {out}: {count} held-out digits, and their labels {data.val_labels[:count].tolist()} to {labels}")


if __name__ == "__main__":
    main()
