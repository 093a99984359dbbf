"""Where the benchmarks find the real UCI file: ``$ABALONE_DATA``, else the copy shipped in the
package (``jobs/resources/abalone.csv``)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def default_data() -> Path:
    env = os.environ.get("ABALONE_DATA")
    if env:
        return Path(env)
    from jobs.adapters.fetch import shipped_data_path

    return shipped_data_path()
