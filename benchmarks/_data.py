"""Where the benchmarks find the real UCI file: ``$ABALONE_DATA``, else ``../shared/data/abalone.csv``
beside the repository (the layout CI uses)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def default_data() -> Path:
    env = os.environ.get("ABALONE_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data" / "abalone.csv"
