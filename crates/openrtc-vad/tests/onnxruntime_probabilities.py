"""Runs a Silero 16 kHz ONNX file in onnxruntime over raw float32 samples, 512-sample chunks
after their 64 samples of context, the way the reference's Silero plugin feeds it, and prints
one probability per line (repr: every digit of the float32 as a Python float).

Usage: python onnxruntime_probabilities.py MODEL.onnx SAMPLES.f32"""

import sys

import numpy as np
import onnxruntime

CHUNK = 512
CONTEXT = 64


def main(model_path: str, samples_path: str) -> int:
    samples = np.fromfile(samples_path, dtype="<f4")
    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        model_path, sess_options=options, providers=["CPUExecutionProvider"]
    )
    window = np.zeros((1, CONTEXT + CHUNK), dtype=np.float32)
    state = np.zeros((2, 1, 128), dtype=np.float32)
    for start in range(0, len(samples) - CHUNK + 1, CHUNK):
        window[0, CONTEXT:] = samples[start : start + CHUNK]
        output, state = session.run(None, {"input": window, "state": state})
        print(repr(float(output.item())))
        window[0, :CONTEXT] = window[0, -CONTEXT:]
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
