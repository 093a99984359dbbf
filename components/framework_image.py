"""The SageMaker scikit-learn framework image of a region (training and serving).

SageMaker publishes its framework images from one AWS account per region. The table of those
accounts is read from the SageMaker Python SDK installed in the deploying environment
(``sagemaker.core``'s ``image_uri_config/sklearn.json``, located through the ``sagemaker-core``
distribution's file list, without importing the SDK), so a stack in any region gets the right
image from ``aws:region`` alone and no stack file copies an account id.

``1.4-2-py312`` is the only scikit-learn image that runs Python ≥ 3.11, which ``jobs/`` needs
(see :mod:`components.packaging`).
"""

from __future__ import annotations

import json
from functools import cache
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Literal

FRAMEWORK_VERSION = "1.4-2-py312"
PROCESSOR = "cpu"
PY_VERSION = "py3"
_CONFIG = "sagemaker/core/image_uri_config/sklearn.json"

Scope = Literal["training", "inference"]


class FrameworkImageError(LookupError):
    """No scikit-learn framework image is published for the region (or the SDK is missing)."""


@cache
def image_config() -> dict:
    """The SDK's scikit-learn image table (scope → version → registry account per region)."""
    try:
        files = distribution("sagemaker-core").files or []
    except PackageNotFoundError as err:
        raise FrameworkImageError("the sagemaker SDK (sagemaker-core) is not installed") from err
    found = [f for f in files if f.as_posix() == _CONFIG]
    if not found:
        raise FrameworkImageError(f"sagemaker-core has no {_CONFIG}")
    return json.loads(Path(str(found[0].locate())).read_text())


def sklearn_image_uri(region: str, scope: Scope, version: str = FRAMEWORK_VERSION) -> str:
    """``<account>.dkr.ecr.<region>.<domain>/sagemaker-scikit-learn:<version>-cpu-py3``."""
    versions = image_config()[scope]["versions"]
    if version not in versions:
        raise FrameworkImageError(f"no scikit-learn {scope} image {version}")
    spec = versions[version]
    account = spec["registries"].get(region)
    if account is None:
        raise FrameworkImageError(
            f"no scikit-learn {scope} image {version} in region {region} "
            f"(published in {', '.join(sorted(spec['registries']))})"
        )
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    tag = f"{version}-{PROCESSOR}-{PY_VERSION}"
    return f"{account}.dkr.ecr.{region}.{domain}/{spec['repository']}:{tag}"
