"""Real image data for training-mode tests: crops of the photograph scipy ships as
``scipy/misc/face.dat`` (a 768 x 1024 RGB raccoon picture, bz2-compressed raw bytes), read from
the real-Theano venv's scipy without importing scipy.  Where that venv is absent, a smooth
random field stands in (said in the returned description)."""
from __future__ import annotations

import bz2
import functools
from pathlib import Path

import numpy as np


@functools.cache
def _face() -> tuple[np.ndarray | None, str]:
    from tests.envs.theano_env import ENV_DIR
    for p in sorted(Path(ENV_DIR).glob("lib/python*/site-packages/scipy/misc/face.dat")):
        raw = bz2.decompress(p.read_bytes())
        return np.frombuffer(raw, np.uint8).reshape(768, 1024, 3), f"crops of {p.name}"
    return None, "smooth random field (no scipy face.dat found)"


def photo_batches(steps: int, batch: int, size: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """``(steps, batch, 3, size, size)`` float32 crops (NCHW), each pixel (v - 128) / 64; and
    where they come from.  Crops are taken at random places and scales (1x, 2x, 4x
    subsampling), so batches differ in their statistics as real training batches do."""
    img, what = _face()
    rng = np.random.default_rng(seed)
    if img is None:
        f = rng.normal(size=(96, 128, 3))
        for _ in range(4):
            f = (f + np.roll(f, 1, 0) + np.roll(f, 1, 1)) / 3
        img = np.clip(128 + 60 * f / f.std(), 0, 255)
    out = np.empty((steps, batch, 3, size, size), np.float32)
    H, W = img.shape[:2]
    for s in range(steps):
        for b in range(batch):
            k = int(rng.choice([1, 2, 4])) if min(H, W) >= 4 * size else 1
            y = int(rng.integers(0, H - k * size + 1))
            x = int(rng.integers(0, W - k * size + 1))
            crop = img[y:y + k * size:k, x:x + k * size:k].astype(np.float32)
            out[s, b] = ((crop - 128.0) / 64.0).transpose(2, 0, 1)
    return out, what
