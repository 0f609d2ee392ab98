#!/usr/bin/env python3
"""`python3 models/tabletop/train.py`: train the tabletop CLIP.
The code and the options are in clip_tools.tabletop.train, which needs the package
installed (`pip install -r models/requirements.txt` from the repository root)."""
import sys

from clip_tools.tabletop.train import main

if __name__ == "__main__":
    sys.exit(main())
