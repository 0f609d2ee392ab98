#!/usr/bin/env python3
"""`python3 models/tabletop/scenes.py`: preview grid of the tabletop scene generator.
The code and the options are in clip_tools.tabletop.scenes, which needs the package
installed (`pip install -r models/requirements.txt` from the repository root)."""
import sys

from clip_tools.tabletop.scenes import main

if __name__ == "__main__":
    sys.exit(main())
