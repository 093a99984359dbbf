"""Fixtures of the container tests: a Python 3.12 interpreter, the code package as the stack
builds it, and the image's venv (cached, see ``tests/container/stack.py``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
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


#: where the stack uploads the code package (components/abalone_mlops.py SOURCEDIR_KEY)
CODE_KEY = "code/sagemaker/sourcedir.tar.gz"


@dataclass(frozen=True)
class CodeUpload:
    uri: str  # what the stack passes as SAGEMAKER_SUBMIT_DIRECTORY / sagemaker_submit_directory
    env: dict[str, str]  # how the image's toolkits reach the S3 emulator


@pytest.fixture(scope="module")
def code_upload(sourcedir, moto_endpoint) -> CodeUpload:
    """The code package in an S3 bucket (moto on loopback), as ``pulumi up`` leaves it.

    Uploaded per module: the moto server shares its state with the in-process ``mock_aws`` of
    other test modules on the same worker, which wipes every bucket when it ends. (When the package
    was gone, the image's training entry failed to download it, then failed to write its failure
    file, and exited 0 with nothing logged.)"""
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3.create_bucket(Bucket="abalone-artifacts-container-test")
    s3.upload_file(str(sourcedir), "abalone-artifacts-container-test", CODE_KEY)
    return CodeUpload(
        uri=f"s3://abalone-artifacts-container-test/{CODE_KEY}",
        env={
            "S3_ENDPOINT_URL": moto_endpoint,  # sagemaker-containers/-training's own setting
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
        },
    )


@pytest.fixture(scope="session")
def container_venv(container_python, sourcedir, request) -> Path:
    venv, took = stack.image_venv(container_python, sourcedir)
    if took is not None:
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"container venv built in {took:.0f} s: {venv}")
    return venv


@pytest.fixture(scope="module", autouse=True)
def _one_module_in_the_venv_at_a_time(container_venv):
    """The cached venv is one container: each module reinstalls the code package into it, so two
    modules on two xdist workers must not use it at the same time."""
    import fcntl

    with (container_venv / ".in-use").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
