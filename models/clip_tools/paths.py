"""Where the tools find the repository's files: default outputs and caches (models/.cache),
the default bundle and its evaluation set (models/tabletop), the release binaries (target/).

The package lives in the repository (models/clip_tools), and the paths are taken from
there when it is imported from the checkout: run as models/*.py, or installed editable
(`pip install -e models`, what models/requirements.txt does). A copy installed elsewhere
(`pip install ./models`) takes them from the current directory instead, which must then be
the repository root.
"""

from __future__ import annotations

from pathlib import Path


def _repo_root() -> Path:
    here = Path(__file__).resolve().parent.parent.parent
    if (here / "models" / "clip_tools" / "paths.py").is_file():
        return here
    return Path.cwd()


REPO_ROOT = _repo_root()
MODELS_DIR = REPO_ROOT / "models"
CACHE_DIR = MODELS_DIR / ".cache"
TABLETOP_DIR = MODELS_DIR / "tabletop"
TARGET_RELEASE = REPO_ROOT / "target" / "release"
