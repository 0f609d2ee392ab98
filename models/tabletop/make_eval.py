#!/usr/bin/env python3
"""`python3 models/tabletop/make_eval.py`: write the tabletop evaluation set and samples.
The code and the options are in clip_tools.tabletop.make_eval, which needs the package
installed (`pip install -r models/requirements.txt` from the repository root)."""
import sys

from clip_tools.tabletop.make_eval import main

if __name__ == "__main__":
    sys.exit(main())
