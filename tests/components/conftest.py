"""Pulumi unit-test mocks for the whole program, shared by ``tests/components``.

``pulumi.runtime.set_mocks`` is called once, here, before any component module is imported. The
mocks record every registered resource with its inputs and answer with plausible outputs (ARNs,
physical names); :func:`tests.components.harness.run_program` runs ``components.abalone_mlops.build``
for a stack under them and returns what was registered.
"""

from __future__ import annotations

import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"pulumi_aws(\..*)?")
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"pulumi(\..*)?")

import pulumi  # noqa: E402
import pytest  # noqa: E402
from pulumi.runtime.mocks import MockMonitor  # noqa: E402

from tests.components.mocks import RecordingMocks  # noqa: E402

MOCKS = RecordingMocks()
MONITOR = MockMonitor(MOCKS)
pulumi.runtime.set_mocks(
    MOCKS, project="abalone-mlops", stack="unit", preview=False, monitor=MONITOR
)

from tests.components.harness import Program, run_program  # noqa: E402


@pytest.fixture(scope="session")
def programs(tmp_path_factory) -> dict[str, Program]:
    """The whole program run once per stack (dev, prd) under the mocks."""
    build_dir = tmp_path_factory.mktemp("pulumi-build")
    return {
        stack: run_program(stack, MOCKS, MONITOR, build_dir / stack) for stack in ("dev", "prd")
    }


@pytest.fixture(scope="session")
def dev_values_as_prd(programs, tmp_path_factory) -> Program:
    """The dev stack's config values under the stack name ``prd``: the stack name alone."""
    config = programs["dev"].config.model_copy(update={"stack": "prd"})
    build_dir = tmp_path_factory.mktemp("pulumi-build-renamed")
    return run_program("prd", MOCKS, MONITOR, build_dir, config=config)


@pytest.fixture(scope="session", params=["dev", "prd"])
def program(request, programs) -> Program:
    return programs[request.param]


@pytest.fixture(scope="session")
def dev(programs) -> Program:
    return programs["dev"]


@pytest.fixture(scope="session")
def prd(programs) -> Program:
    return programs["prd"]
