"""Stack configuration: declared keys, stack files, typed loading, consistency with jobs.settings."""

from __future__ import annotations

import pytest

from components.config import CONFIG_NAMESPACE, ConfigError, StackConfig, load_stack_config
from tests.components.harness import config_for, project_file, stack_file

STACKS = ("dev", "prd")
PROVIDER_KEYS = {"aws:region"}


def test_project_file_declares_every_key_the_program_reads_with_a_description():
    declared = project_file()["config"]
    assert set(declared) == set(StackConfig.config_keys())
    for key, spec in declared.items():
        assert spec.get("description"), f"{key} has no description"
        assert spec.get("type") in ("string", "integer", "boolean", "number"), key
        assert not spec.get("secret"), f"{key}: stack files hold no secrets"


@pytest.mark.parametrize("stack", STACKS)
def test_stack_files_use_declared_keys_and_set_every_required_one(stack):
    declared = project_file()["config"]
    values = stack_file(stack)
    prefix = f"{CONFIG_NAMESPACE}:"
    keys = {k[len(prefix) :] for k in values if k.startswith(prefix)}
    others = {k for k in values if not k.startswith(prefix)}
    assert others == PROVIDER_KEYS, f"unexpected non-project keys {others - PROVIDER_KEYS}"
    assert keys - set(declared) == set(), "keys not declared in Pulumi.yaml"
    required = {k for k, spec in declared.items() if "default" not in spec}
    assert required - keys == set(), f"Pulumi.{stack}.yaml misses required keys"


@pytest.mark.parametrize("stack", STACKS)
def test_stack_config_loads_typed_and_frozen(stack):
    cfg = config_for(stack)
    assert cfg.stack == stack and cfg.region == "us-east-1"
    with pytest.raises(Exception, match="frozen"):
        cfg.stack = "x"  # type: ignore[misc]


def test_stack_thresholds_agree_with_the_job_settings():
    from jobs.core.policy import STACKS as POLICIES

    for stack in STACKS:
        cfg = config_for(stack)
        assert cfg.require_approval == POLICIES[stack].require_approval, stack
        assert cfg.drift_psi_threshold == POLICIES[stack].drift_psi, stack


def _values(stack: str, **changes) -> dict:
    cfg = config_for(stack)
    values = cfg.model_dump(by_alias=True, exclude={"stack", "region"})
    values.update(changes)
    return values


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"endpointInstanceCount": 0}, "endpointInstanceCount"),
        ({"trackingServerSize": "Huge"}, "trackingServerSize"),
        ({"alertEmail": "nobody"}, "alertEmail"),
        ({"autoscalingMaxCapacity": 1, "endpointInstanceCount": 2}, "autoscalingMaxCapacity"),
        ({"connectionArn": ""}, "connectionArn"),
        ({"unknownKey": 1}, "unknown config key"),
    ],
)
def test_bad_config_raises_a_config_error_naming_the_key(changes, message):
    with pytest.raises(ConfigError, match=message):
        load_stack_config("prd", "us-east-1", _values("prd", **changes))


def test_pulumi_engine_strings_are_converted():
    values = {
        k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in _values("dev").items()
    }
    cfg = load_stack_config("dev", "us-east-1", values)
    assert cfg == config_for("dev")


def test_unknown_stack_is_rejected():
    with pytest.raises(ConfigError, match="stack"):
        load_stack_config("qa", "us-east-1", _values("dev"))


@pytest.mark.parametrize("stack", STACKS)
def test_main_reads_the_engine_config_into_the_same_object(stack):
    """``__main__.read_config`` over the strings the Pulumi engine passes (project defaults
    applied, as the CLI does) gives the same object the tests build from the YAML files."""
    import json
    import runpy

    import pulumi

    from tests.components.harness import REPO

    declared = project_file()["config"]
    values = {k: spec["default"] for k, spec in declared.items() if "default" in spec}
    raw = stack_file(stack)
    prefix = f"{CONFIG_NAMESPACE}:"
    values.update({k[len(prefix) :]: v for k, v in raw.items() if k.startswith(prefix)})
    engine = {f"{prefix}{k}": v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}
    engine["aws:region"] = raw["aws:region"]
    module = runpy.run_path(str(REPO / "__main__.py"), run_name="abalone_main_under_test")
    pulumi.runtime.set_all_config(engine)
    try:
        assert module["read_config"](stack) == config_for(stack)
    finally:
        pulumi.runtime.set_all_config({})
