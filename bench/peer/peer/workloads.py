"""The fixed work of one frame, as the Rust benchmark defines it, written the idiomatic
Python way (numpy for the matrix product, scipy.signal.lfilter for the filter)."""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

SIDE = 96
SAMPLES = 320
# y[n] = y[n-1] + 0.1 * (x[n] - y[n-1])  ==  0.9 * y[n-1] + 0.1 * x[n]
_B = np.array([0.1], dtype=np.float32)
_A = np.array([1.0, -0.9], dtype=np.float32)
_RAMP = np.arange(SAMPLES, dtype=np.float64)


class CpuFrame:
    """One 96x96 float32 matrix product per frame."""

    def __init__(self, seed: int) -> None:
        cells = np.arange(SIDE * SIDE)
        self.left = (((cells + seed) % 7) * 0.5).astype(np.float32).reshape(SIDE, SIDE)
        self.right = (((cells * 3 + seed) % 5) * 0.25).astype(np.float32).reshape(SIDE, SIDE)

    def __call__(self) -> float:
        product = self.left @ self.right
        return float(product[1, 1])


class DspFrame:
    """320 samples of a sine through a one-pole low-pass, state carried between frames."""

    def __init__(self, seed: int) -> None:
        self.phase = seed
        self.state = np.zeros(1, dtype=np.float32)

    def __call__(self) -> float:
        samples = np.sin((self.phase + _RAMP) * 0.172).astype(np.float32)
        filtered, self.state = lfilter(_B, _A, samples, zi=self.state)
        self.phase += SAMPLES
        return float(np.dot(filtered, filtered))


def frame_work(workload: str, seed: int):
    if workload == "cpu":
        return CpuFrame(seed)
    if workload == "dsp":
        return DspFrame(seed)
    raise ValueError(f"unknown workload {workload!r}")
