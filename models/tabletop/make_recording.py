#!/usr/bin/env python3
"""`python3 models/tabletop/make_recording.py`: write the bundled demo recording (a rosbag2
bag with ground truth) under models/tabletop/recording. The code is in
clip_tools.tabletop.make_recording, which needs the package installed
(`pip install -r models/requirements.txt` from the repository root)."""
import sys

from clip_tools.tabletop.make_recording import main

if __name__ == "__main__":
    sys.exit(main())
