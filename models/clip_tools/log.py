"""The tools' one logging helper: progress and diagnostics go to stderr, so stdout carries
only results (tables, `--print-labels`, ...)."""

from __future__ import annotations

import sys
import time


def log(msg: str, *, clock: bool = False) -> None:
    """Print `msg` to stderr at once; with `clock`, prefixed by the wall-clock time
    (`[HH:MM:SS] msg`, for long runs such as training)."""
    if clock:
        msg = f"[{time.strftime('%H:%M:%S')}] {msg}"
    print(msg, file=sys.stderr, flush=True)
