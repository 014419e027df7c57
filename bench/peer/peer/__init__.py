"""The peer harness: drives the Python reference (PyPI `openrtc`) through the same four
benchmarks as `openrtc-bench`, printing JSON of the same shape."""
