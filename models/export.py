#!/usr/bin/env python3
"""`python3 models/export.py`: export a CLIP checkpoint to a model bundle.
The code and the options are in clip_tools.export."""
import sys

from clip_tools.export import main

if __name__ == "__main__":
    sys.exit(main())
