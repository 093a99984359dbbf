"""Fixtures of the container tests: a Python 3.12 interpreter, the code package as the stack
builds it, and the image's venv (cached, see ``tests/container/stack.py``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from components.packaging import build_sourcedir
from tests.container import stack


@pytest.fixture(scope="session")
def container_python() -> str:
    python = stack.find_python312()
    if python is None:
        reason = (
            "no Python 3.12 interpreter (the scikit-learn image runs 3.12): set "
            "ABALONE_CONTAINER_PYTHON or install python3.12"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)  # CI must run the container tests
        pytest.skip(reason)
    return python


@pytest.fixture(scope="session")
def sourcedir(tmp_path_factory) -> Path:
    """``sourcedir.tar.gz`` exactly as ``pulumi up`` uploads it (components.packaging)."""
    return build_sourcedir(tmp_path_factory.mktemp("build"))


@pytest.fixture(scope="session")
def container_venv(container_python, sourcedir, request) -> Path:
    venv, took = stack.image_venv(container_python, sourcedir)
    if took is not None:
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"container venv built in {took:.0f} s: {venv}")
    return venv
