#!/usr/bin/env python3
"""`python3 models/families_benchmark.py`: image encoder latency across model families
(MobileCLIP2-S0/S2, SigLIP B/16, ViT-B/32), tract vs onnxruntime, fp32 and int8.
The code and the options are in clip_tools.families_benchmark."""
import sys

from clip_tools.families_benchmark import main

if __name__ == "__main__":
    sys.exit(main())
