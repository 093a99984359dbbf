"""Deploy rehearsal: ``pulumi up`` of a fresh copy of the repository, under the mocks.

The copy holds what a clone holds (tracked and untracked-but-not-ignored files): no ``build/``,
no Lambda image, no seed model, and the stack files as they are (no image URIs). The program
(``__main__.py``, run by ``rehearsal_driver.py`` the way the Pulumi engine runs it) must declare a
complete stack from that alone: the seed model it trains itself, the Lambda image it builds from
the copy and every function pinned to that image's digest, the framework images of the region,
endpoints serving the seed. The second stack reuses the cached seed model.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from components.framework_image import sklearn_image_uri
from components.packaging import LAMBDA_DOCKERFILE, lambda_image_tag
from components.seed_model import seed_model_file
from tests.components.harness import REPO, stack_file
from tests.components.mocks import DOCKER_IMAGE, image_outputs

pytestmark = pytest.mark.slow

FUNCTION = "aws:lambda/function:Function"
OBJECT = "aws:s3/bucketObjectv2:BucketObjectv2"


def copy_of_the_repository(target: Path) -> Path:
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        source = REPO / rel
        if source.is_file():
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / rel)
    return target


def seed_source(tmp: Path) -> str:
    """The real UCI file when the environment has it, else generated data (no network)."""
    real = os.environ.get("ABALONE_DATA")
    if real and Path(real).is_file():
        return real
    from jobs.core.synthetic import make_abalone, to_csv_bytes

    path = tmp / "abalone.csv"
    path.write_bytes(to_csv_bytes(make_abalone(1200, seed=3)))
    return str(path)


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory) -> dict[str, Any]:
    clone = copy_of_the_repository(tmp_path_factory.mktemp("clone"))
    assert not (clone / "build").exists()
    for stack in ("dev", "prd"):
        assert not [k for k in stack_file(stack) if "Image" in k or "seedModel" in k]
    source = seed_source(tmp_path_factory.mktemp("data"))
    runs = {}
    for stack in ("dev", "prd"):
        out = clone.parent / f"{clone.name}-{stack}.json"
        done = subprocess.run(
            [
                sys.executable,
                "tests/components/rehearsal_driver.py",
                stack,
                str(out),
                f"seedModelSource={source}",
            ],
            cwd=clone,
            env={**os.environ, "PYTHONPATH": str(clone)},
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        runs[stack] = json.loads(out.read_text())
    return {"clone": clone, "source": source, "runs": runs}


def of_type(resources: list[dict], typ: str) -> list[dict]:
    return [r for r in resources if r["type"] == typ]


def one(resources: list[dict], typ: str, suffix: str) -> dict:
    (found,) = [r for r in of_type(resources, typ) if r["name"].endswith(suffix)]
    return found["inputs"]


@pytest.mark.parametrize("stack", ["dev", "prd"])
def test_the_program_builds_its_lambda_image_from_the_clone(rehearsal, stack):
    clone, resources = rehearsal["clone"], rehearsal["runs"][stack]
    (image,) = of_type(resources, DOCKER_IMAGE)
    inputs = image["inputs"]
    # the engine runs the program in the project directory: the clone itself is the context
    assert inputs["context"]["location"] == "."
    assert inputs["dockerfile"]["location"] == LAMBDA_DOCKERFILE.as_posix()
    assert inputs["push"] is True and inputs["platforms"] == ["linux/amd64"]
    (repo,) = of_type(resources, "aws:ecr/repository:Repository")
    repo_url = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{repo['inputs']['name']}"
    assert inputs["tags"] == [f"{repo_url}:{lambda_image_tag(clone)}"]
    digest = image_outputs(inputs)["digest"]
    fns = of_type(resources, FUNCTION)
    assert len(fns) == 5
    for fn in fns:
        assert fn["inputs"]["packageType"] == "Image", fn["name"]
        assert fn["inputs"]["imageUri"] == f"{repo_url}@{digest}", fn["name"]


@pytest.mark.parametrize("stack", ["dev", "prd"])
def test_the_program_trains_the_seed_model_and_the_endpoints_serve_it(rehearsal, stack):
    clone, resources = rehearsal["clone"], rehearsal["runs"][stack]
    seeds = sorted((clone / "build").glob("seed-model-*.tar.gz"))
    assert len(seeds) == 1, seeds  # built once, reused by the second stack
    seed = one(resources, OBJECT, "-seed-model")
    assert seed["source"] == {"file": str(seeds[0])}
    with tarfile.open(seeds[0]) as tar:
        names = set(tar.getnames())
        metadata = json.load(tar.extractfile("metadata.json"))
    assert {"model.joblib", "metadata.json", "reference_profile.json"} <= names
    assert metadata["target"] == "rings"
    region = stack_file(stack)["aws:region"]
    models = of_type(resources, "aws:sagemaker/model:Model")
    assert len(models) == 2  # staging and production
    for model in models:
        container = model["inputs"]["primaryContainer"]
        assert container["modelDataUrl"].endswith(f"/{seed['key']}"), model["name"]
        assert container["image"] == sklearn_image_uri(region, "inference")
    endpoints = of_type(resources, "aws:sagemaker/endpoint:Endpoint")
    assert {e["inputs"]["name"] for e in endpoints} == {
        f"abalone-{stack}-staging",
        f"abalone-{stack}-production",
    }


def test_the_state_machine_trains_with_the_region_image(rehearsal):
    for stack, resources in rehearsal["runs"].items():
        (sm,) = of_type(resources, "aws:sfn/stateMachine:StateMachine")
        definition = json.loads(sm["inputs"]["definition"])
        text = json.dumps(definition)
        assert sklearn_image_uri(stack_file(stack)["aws:region"], "training") in text


def test_the_cached_seed_model_is_reused_without_training(rehearsal):
    clone = rehearsal["clone"]
    (built,) = (clone / "build").glob("seed-model-*.tar.gz")
    before = built.stat().st_mtime_ns
    again = seed_model_file("", rehearsal["source"], root=clone)
    assert again == built and built.stat().st_mtime_ns == before
