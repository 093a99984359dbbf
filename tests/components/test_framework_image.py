"""The SageMaker scikit-learn images come from the region, with the SDK's own answer as oracle."""

from __future__ import annotations

import pytest

from components.config import ConfigError, load_stack_config
from components.framework_image import (
    FRAMEWORK_VERSION,
    FrameworkImageError,
    image_config,
    sklearn_image_uri,
)
from tests.components.harness import stack_file

REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2", "sa-east-1", "cn-north-1"]


@pytest.mark.parametrize("region", REGIONS)
@pytest.mark.parametrize("scope", ["training", "inference"])
def test_the_image_uri_is_the_one_the_sagemaker_sdk_retrieves(region, scope, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)  # some SDK modules need it at import
    from sagemaker.core import image_uris

    expected = image_uris.retrieve(
        "sklearn",
        region=region,
        version=FRAMEWORK_VERSION,
        py_version="py3",
        instance_type="ml.m5.large",
        image_scope=scope,
    )
    assert sklearn_image_uri(region, scope) == expected


def test_every_region_of_the_sdk_table_has_both_images():
    for scope in ("training", "inference"):
        regions = image_config()[scope]["versions"][FRAMEWORK_VERSION]["registries"]
        assert len(regions) > 20
        for region in regions:
            assert sklearn_image_uri(region, scope).endswith(f":{FRAMEWORK_VERSION}-cpu-py3")


def test_an_unknown_region_is_a_clear_error():
    with pytest.raises(FrameworkImageError, match="mars-north-1"):
        sklearn_image_uri("mars-north-1", "training")


def test_the_stack_files_copy_no_image_and_the_config_derives_it(dev):
    for stack in ("dev", "prd"):
        assert not [k for k in stack_file(stack) if "ImageUri" in k], stack
    assert dev.config.training_image_uri == sklearn_image_uri(dev.config.region, "training")
    assert dev.config.inference_image_uri == sklearn_image_uri(dev.config.region, "inference")
    base = dev.config.model_dump(
        by_alias=True, exclude={"stack", "region", "training_image_uri", "inference_image_uri"}
    )
    moved = load_stack_config("dev", "eu-west-1", base)
    assert moved.training_image_uri == sklearn_image_uri("eu-west-1", "training")
    assert ".eu-west-1." in moved.inference_image_uri
    custom = "111111111111.dkr.ecr.eu-west-1.amazonaws.com/my-sklearn:1"
    kept = load_stack_config("dev", "eu-west-1", {**base, "trainingImageUri": custom})
    assert kept.training_image_uri == custom
    with pytest.raises(ConfigError, match=r"trainingImageUri.*mars-north-1"):
        load_stack_config("dev", "mars-north-1", base)
