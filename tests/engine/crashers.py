"""Stand-ins for a native decoder that takes its process down (imported by the helper process)."""

from __future__ import annotations

import os
import time


def abort_like_gdcm(*_args: object) -> None:
    os.abort()  # what std::terminate does to the process


def hang(*_args: object) -> None:
    time.sleep(60)
