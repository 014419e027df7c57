"""The fixed work of one frame, as the Rust benchmark defines it, written the idiomatic
Python way (numpy for the matrix product, scipy.signal.lfilter for the filter, and the
reference's own Silero plugin, `livekit-plugins-silero`, for the VAD)."""

from __future__ import annotations

import math

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


# The vad workload's audio: 2.4 s looped (120 frames of 20 ms), each session from its own
# frame; the same speech-like synthesis as the Rust side's `openrtc_vad::synth::SpeechLike`.
VAD_RATE = 16000
VAD_FRAME = 320
VAD_CHUNK = 512
VAD_LOOP_FRAMES = 120
_VOWELS = [
    (730.0, 1090.0, 2440.0),
    (270.0, 2290.0, 3010.0),
    (530.0, 1840.0, 2480.0),
    (570.0, 840.0, 2410.0),
    (300.0, 870.0, 2240.0),
    (660.0, 1720.0, 2410.0),
]
_vad_shared: dict = {}


def speech_like(count: int) -> np.ndarray:
    """`count` samples of speech-like int16 audio from the start of the cycle (seed 0)."""
    out = np.zeros(count, dtype=np.float64)
    noise_state = 1
    ys = [[0.0, 0.0] for _ in range(3)]
    phase = 0.0

    def noise() -> float:
        nonlocal noise_state
        noise_state = (noise_state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        return (noise_state >> 40) / float(1 << 24) * 2.0 - 1.0

    def resonate(k: int, x: float, frequency: float, bandwidth: float) -> float:
        r = math.exp(-math.pi * bandwidth / VAD_RATE)
        c = -r * r
        b = 2.0 * r * math.cos(2.0 * math.pi * frequency / VAD_RATE)
        y = (1.0 - b - c) * x + b * ys[k][0] + c * ys[k][1]
        ys[k][1], ys[k][0] = ys[k][0], y
        return y

    for i in range(count):
        t = i / VAD_RATE
        hiss = noise() * 0.002
        in_cycle = t % 2.4
        if in_cycle >= 1.6:
            out[i] = hiss
            continue
        syllable, position = int(in_cycle / 0.25), (in_cycle % 0.25) / 0.25
        f1, f2, f3 = _VOWELS[(syllable * 7 + int(t / 2.4) * 3) % len(_VOWELS)]
        f0 = 120.0 + 25.0 * math.sin(2.0 * math.pi * 0.6 * t) + 15.0 * (1.0 - position)
        phase += f0 / VAD_RATE
        if phase >= 1.0:
            phase -= 1.0
        pulse = 1.0 - 2.0 * phase if phase < 0.6 else -0.2
        envelope = math.sqrt(math.sin(math.pi * position / 0.8)) if position < 0.8 else 0.0
        consonant = 0.5 * noise() if 0.8 <= position < 0.9 else 0.0
        x = pulse * envelope
        voiced = (
            resonate(0, x, f1, 90.0)
            + 0.7 * resonate(1, x, f2, 110.0)
            + 0.4 * resonate(2, x, f3, 170.0)
        )
        out[i] = min(1.0, max(-1.0, 0.08 * voiced + 0.05 * consonant + hiss))
    return np.round(out * 32767.0).astype(np.int16)


def vad_shared():
    """The plugin's model, loaded once per process (`silero.VAD.load()`, its defaults: 16 kHz,
    CPU, the plugin's bundled `silero_vad.onnx` in onnxruntime), and the looped audio."""
    if not _vad_shared:
        from livekit.plugins import silero

        _vad_shared["vad"] = silero.VAD.load()
        _vad_shared["audio"] = speech_like(VAD_LOOP_FRAMES * VAD_FRAME)
    return _vad_shared["vad"], _vad_shared["audio"]


class VadFrame:
    """20 ms of 16 kHz audio pushed into the session's own stream of the reference's Silero
    plugin (`VAD.stream()`, one model shared by all sessions); a frame is done when the plugin
    has reported the inference of every 512-sample chunk it completed. The inference runs
    where the plugin runs it (`run_in_executor`), so its time is on the frame's path as on the
    Rust side."""

    is_async = True

    def __init__(self, seed: int) -> None:
        from livekit import rtc
        from livekit.agents.vad import VADEventType

        vad, self.audio = vad_shared()
        self.stream = vad.stream()
        self.frame_type, self.done_type = rtc.AudioFrame, VADEventType.INFERENCE_DONE
        self.next_frame = seed % VAD_LOOP_FRAMES
        self.pushed = 0
        self.inferred = 0

    async def __call__(self) -> float:
        start = self.next_frame * VAD_FRAME
        self.next_frame = (self.next_frame + 1) % VAD_LOOP_FRAMES
        self.stream.push_frame(
            self.frame_type(
                data=self.audio[start : start + VAD_FRAME].tobytes(),
                sample_rate=VAD_RATE,
                num_channels=1,
                samples_per_channel=VAD_FRAME,
            )
        )
        self.pushed += VAD_FRAME
        total = 0.0
        while self.inferred < self.pushed // VAD_CHUNK:
            event = await self.stream.__anext__()
            if event.type == self.done_type:
                self.inferred += 1
                total += event.probability
        return total

    async def aclose(self) -> None:
        await self.stream.aclose()


def frame_work(workload: str, seed: int):
    if workload == "cpu":
        return CpuFrame(seed)
    if workload == "dsp":
        return DspFrame(seed)
    if workload == "vad":
        return VadFrame(seed)
    raise ValueError(f"unknown workload {workload!r}")
