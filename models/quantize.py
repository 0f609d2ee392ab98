#!/usr/bin/env python3
"""`python3 models/quantize.py`: add the int8 image encoder to a bundle.
The code and the options are in clip_tools.quantize."""
import sys

from clip_tools.quantize import main

if __name__ == "__main__":
    sys.exit(main())
