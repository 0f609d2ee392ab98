#!/usr/bin/env python3
"""`python3 models/tabletop/make_locate.py`: write the tabletop localisation set (scenes + boxes).
The code and the options are in clip_tools.tabletop.make_locate, which needs the package
installed (`pip install -r models/requirements.txt` from the repository root)."""
import sys

from clip_tools.tabletop.make_locate import main

if __name__ == "__main__":
    sys.exit(main())
