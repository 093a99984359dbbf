"""Run the Pulumi program (``__main__.py``) of the current directory under the unit-test mocks.

    python tests/components/rehearsal_driver.py <stack> <out.json> [key=value ...]

What the Pulumi engine would do for ``pulumi up`` on stack ``<stack>``: hand the program the
project defaults of ``Pulumi.yaml`` overlaid with ``Pulumi.<stack>.yaml`` (plus ``key=value``
overrides), run ``__main__.py``, and here record every registered resource with its inputs into
``<out.json>``. Used by ``test_rehearsal.py`` from a fresh copy of the repository, in a process of
its own (mocks are set once per process).
"""

from __future__ import annotations

import json
import runpy
import sys
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", category=DeprecationWarning)

import pulumi  # noqa: E402
import yaml  # noqa: E402
from pulumi.runtime.mocks import MockMonitor  # noqa: E402

from tests.components.mocks import RecordingMocks  # noqa: E402

PROJECT = "abalone-mlops"


def engine_config(stack: str, overrides: dict[str, str]) -> dict[str, str]:
    declared = yaml.safe_load(Path("Pulumi.yaml").read_text())["config"]
    values = {f"{PROJECT}:{k}": v["default"] for k, v in declared.items() if "default" in v}
    values.update(yaml.safe_load(Path(f"Pulumi.{stack}.yaml").read_text())["config"])
    values.update({f"{PROJECT}:{k}": v for k, v in overrides.items()})
    # the engine passes every value as a string (YAML scalars as their JSON text)
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


def describe(value):
    if isinstance(value, pulumi.FileAsset | pulumi.FileArchive):
        return {"file": str(Path(value.path).resolve())}
    if isinstance(value, pulumi.AssetArchive):
        return {"archive": sorted(value.assets)}
    return repr(value)


def main() -> None:
    stack, out, *pairs = sys.argv[1:]
    mocks = RecordingMocks()
    monitor = MockMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    overrides = dict(pair.split("=", 1) for pair in pairs)
    pulumi.runtime.set_all_config(engine_config(stack, overrides))

    @pulumi.runtime.test
    def deploy():
        runpy.run_path("__main__.py", run_name="__main__")

    deploy()
    resources = [
        {"type": typ, "name": name, "inputs": inputs}
        for (typ, name), inputs in mocks.registered.items()
    ]
    Path(out).write_text(json.dumps(resources, default=describe, sort_keys=True))


if __name__ == "__main__":
    main()
