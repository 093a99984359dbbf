"""The CLI's log file: rotated when a command starts with it over the limit, never mid-run."""

from __future__ import annotations

import os
import subprocess
import sys

from jobs.cli.logs import LOG_KEEP, LOG_MAX_BYTES


def _fill(path, marker: str, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        fh.write(marker + "\n")
        fh.write("x" * size)


def _abalone(home, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ABALONE_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "jobs", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_commands_rotate_an_oversized_log_keeping_three_generations(tmp_path):
    home = tmp_path / "home"
    log = home / "logs" / "abalone.log"
    missing = str(tmp_path / "missing.csv")
    for n in range(1, LOG_KEEP + 2):  # each command starts with an oversized log
        _fill(log, f"generation {n}", LOG_MAX_BYTES + 1)
        result = _abalone(home, "ingest", "--source", missing)
        assert result.returncode == 2, result.stderr
        assert "no such file" in result.stderr
    names = sorted(p.name for p in log.parent.iterdir())
    assert names == ["abalone.log.1", "abalone.log.2", "abalone.log.3"]
    newest, oldest = log.parent / "abalone.log.1", log.parent / "abalone.log.3"
    assert newest.read_text()[:20].startswith(f"generation {LOG_KEEP + 1}")
    assert oldest.read_text()[:20].startswith("generation 2")  # generation 1 was dropped


def test_a_small_log_is_appended_to_not_rotated(tmp_path):
    home = tmp_path / "home"
    log = home / "logs" / "abalone.log"
    _fill(log, "earlier", 10)
    assert _abalone(home, "ingest", "--source", str(tmp_path / "missing.csv")).returncode == 2
    assert sorted(p.name for p in log.parent.iterdir()) == ["abalone.log"]
    assert log.read_text().startswith("earlier")
