"""A bug in a command is one line and exit 2: it never borrows a command's own exit codes."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import jobs.monitoring.monitor as monitor_module
from jobs.cli.app import app
from jobs.cli.logs import log_file_path

runner = CliRunner()


def _boom(*_args, **_kwargs):
    raise ValueError("boom from https://example.org/x?X-Amz-Signature=topsecret")


@pytest.mark.parametrize("args", [["monitor"], ["monitor", "--json"]])
def test_an_unexpected_exception_in_monitor_exits_2_not_1_which_means_drift(
    args, tmp_path, monkeypatch
):
    monkeypatch.setenv("ABALONE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(monitor_module, "monitor", _boom)
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "unexpected ValueError: boom" in result.output
    assert "Traceback" not in result.output and "topsecret" not in result.output
    log = log_file_path()
    assert "Traceback" in log.read_text() and "_boom" in log.read_text()
    assert "topsecret" not in log.read_text()
