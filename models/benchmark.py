#!/usr/bin/env python3
"""`python3 models/benchmark.py`: encoder latency, tract vs onnxruntime.
The code and the options are in clip_tools.benchmark."""
import sys

from clip_tools.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
