"""Run the Pulumi program for one stack under the mocks and index what it registered."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml

from components.abalone_mlops import AbaloneMlops, build
from components.config import CONFIG_NAMESPACE, StackConfig, load_stack_config
from components.packaging import ProgramAssets, program_assets

REPO = Path(__file__).resolve().parents[2]


def stack_file(stack: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / f"Pulumi.{stack}.yaml").read_text())["config"]


def project_file() -> dict[str, Any]:
    return yaml.safe_load((REPO / "Pulumi.yaml").read_text())


def config_for(stack: str) -> StackConfig:
    """What the Pulumi engine hands the program: project defaults overlaid with the stack file."""
    declared = project_file()["config"]
    values = {k: v["default"] for k, v in declared.items() if "default" in v}
    prefix = f"{CONFIG_NAMESPACE}:"
    raw = stack_file(stack)
    values.update({k[len(prefix) :]: v for k, v in raw.items() if k.startswith(prefix)})
    return load_stack_config(stack, raw.get("aws:region"), values)


def placeholder_seed(build_dir: Path) -> Path:
    """A stand-in for the seed model: these tests check what the program declares, which does not
    depend on the model's bytes (tests/components/test_rehearsal.py builds the real one)."""
    build_dir.mkdir(parents=True, exist_ok=True)
    seed = build_dir / "seed-model-placeholder.tar.gz"
    seed.write_bytes(b"placeholder seed model")
    return seed


@dataclass
class Resource:
    typ: str
    name: str
    inputs: dict[str, Any]
    urn: str

    @property
    def parents(self) -> list[str]:
        """Type chain of the ancestors, outermost first (from the URN)."""
        chain = self.urn.split("::")[2].split("$")
        return chain[:-1]


@dataclass
class Program:
    stack: str
    config: StackConfig
    assets: ProgramAssets
    app: AbaloneMlops
    resources: list[Resource]
    outputs: dict[str, Any]
    definition: dict[str, Any]
    by_name: dict[str, Resource] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_name = {r.name: r for r in self.resources}

    def of_type(self, typ: str) -> list[Resource]:
        return [r for r in self.resources if r.typ == typ]

    def one(self, typ: str, name: str) -> Resource:
        found = [r for r in self.of_type(typ) if r.name == name]
        assert len(found) == 1, f"expected one {typ} named {name}, found {len(found)}"
        return found[0]


def run_program(
    stack: str, mocks, monitor, build_dir: Path, config: StackConfig | None = None
) -> Program:
    config = config or config_for(stack)
    assets = program_assets(placeholder_seed(build_dir), build_dir=build_dir)
    mocks.reset()
    monitor.resources.clear()
    holder: dict[str, Any] = {}

    @pulumi.runtime.test
    def deploy():
        app = build(config, assets)
        holder["app"] = app
        keys = list(app.outputs)
        return pulumi.Output.all(app.pipeline.definition, *app.outputs.values()).apply(
            lambda values: holder.update(
                definition=json.loads(values[0]), outputs=dict(zip(keys, values[1:], strict=True))
            )
        )

    deploy()
    urns = {}
    for urn in monitor.resources:
        chain, name = urn.split("::")[2], urn.split("::")[3]
        urns[(chain.split("$")[-1], name)] = urn
    resources = [
        Resource(typ, name, inputs, urns[(typ, name)])
        for (typ, name), inputs in mocks.registered.items()
    ]
    return Program(
        stack=stack,
        config=config,
        assets=assets,
        app=holder["app"],
        resources=resources,
        outputs=holder["outputs"],
        definition=holder["definition"],
    )
