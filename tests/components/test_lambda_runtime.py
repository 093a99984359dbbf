"""What the Lambda functions need at run time: the container image the program builds and pushes,
the image repository, the dependencies their code imports and the IAM permissions each handler's
calls need (evaluated against the registered policy documents, so a missing permission fails)."""

from __future__ import annotations

import ast
import fnmatch
import json
import os
import re
import shutil
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from components.config import ConfigError, load_stack_config
from components.image_repository import LAMBDA_PULL_ACTIONS, repository_name
from components.lambda_function import BASE_IMAGE
from components.packaging import (
    LAMBDA_DOCKERFILE,
    PACKAGES,
    container_requirements,
    lambda_build_args,
    lambda_context_files,
    lambda_image_tag,
)
from tests.components.harness import REPO, Program
from tests.components.mocks import ACCOUNT, DOCKER_IMAGE, REGION, image_outputs

FUNCTION = "aws:lambda/function:Function"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
HANDLERS = {
    "gate": "gate_handler",
    "system-test": "system_test_handler",
    "approval": "approval_handler",
    "promote": "promote_handler",
    "drift": "drift_handler",
}


def functions(program: Program) -> dict[str, dict[str, Any]]:
    """handler key → function inputs."""
    found = {}
    for fn in program.of_type(FUNCTION):
        key = re.sub(r"^.*-(pipeline|monitoring)-", "", fn.name).removesuffix("-function")
        found[key] = fn.inputs
    assert set(found) == set(HANDLERS), sorted(found)
    return found


def built_image(program: Program) -> tuple[dict[str, Any], dict[str, Any]]:
    """The image resource's inputs and what the provider reports after the push."""
    (image,) = program.of_type(DOCKER_IMAGE)
    return image.inputs, image_outputs(image.inputs)


# ---- the image the program builds ------------------------------------------------------------------
def test_every_function_runs_the_pushed_image_by_digest_with_its_handler(program):
    _, pushed = built_image(program)
    repo_url = program.outputs["lambdaImageRepositoryUrl"]
    assert program.outputs["lambdaImageUri"] == f"{repo_url}@{pushed['digest']}"
    for key, fn in functions(program).items():
        assert fn["packageType"] == "Image", key
        assert fn["imageUri"] == f"{repo_url}@{pushed['digest']}", key
        assert fn["imageConfig"]["commands"] == [f"jobs.aws.handlers.{HANDLERS[key]}"], key
        for zip_only in ("runtime", "handler", "layers", "code"):
            assert not fn.get(zip_only), f"{key}: {zip_only} set on an image function"
    assert program.of_type("aws:lambda/layerVersion:LayerVersion") == []


def test_the_image_is_built_for_amd64_and_pushed_to_the_stack_repository(program):
    inputs, _ = built_image(program)
    repo_url = program.outputs["lambdaImageRepositoryUrl"]
    assert inputs["push"] is True
    assert inputs["platforms"] == ["linux/amd64"]
    # relative to the working directory (the project directory under `pulumi up`), so that
    # another clone of the same tree does not rebuild
    context = Path(os.path.relpath(REPO))
    assert inputs["context"]["location"] == context.as_posix()
    assert inputs["dockerfile"]["location"] == (context / LAMBDA_DOCKERFILE).as_posix()
    assert inputs["tags"] == [f"{repo_url}:{lambda_image_tag()}"]
    assert inputs["buildArgs"] == lambda_build_args()
    (registry,) = inputs["registries"]
    # credentials of the stack's own registry, from aws.ecr.get_authorization_token
    assert registry["address"] == repo_url and registry["username"] == "AWS"
    assert registry["password"]


def test_the_image_tag_is_the_content_address_of_the_build_context(tmp_path):
    for rel in lambda_context_files():
        target = tmp_path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, target)
    first = lambda_image_tag(tmp_path)
    assert re.fullmatch(r"src-[0-9a-f]{16}", first)
    (tmp_path / "README.md").write_text("outside the context: no new image")
    (tmp_path / "jobs" / "__pycache__").mkdir(exist_ok=True)
    (tmp_path / "jobs" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"ignored")
    assert lambda_image_tag(tmp_path) == first
    handlers = tmp_path / "jobs" / "aws" / "handlers.py"
    handlers.write_text(handlers.read_text() + "\n# changed\n")
    assert lambda_image_tag(tmp_path) != first


def test_the_context_files_are_what_the_dockerignore_keeps():
    ignore = (REPO / f"{LAMBDA_DOCKERFILE}.dockerignore").read_text().splitlines()
    rules = [line for line in ignore if line and not line.startswith("#")]
    assert rules[0] == "*"  # everything else of the repository stays out of the context
    kept = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    assert kept == {*PACKAGES, "components/lambda-requirements.txt"}
    files = lambda_context_files()
    assert "jobs/aws/handlers.py" in files and "validation/__init__.py" in files
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
    assert {f.split("/")[0] for f in files} == {*PACKAGES, "components"}


def test_the_image_repository_is_private_scanned_encrypted_and_pruned(program):
    (repo,) = program.of_type("aws:ecr/repository:Repository")
    inputs = repo.inputs
    assert inputs["name"] == repository_name(program.stack)
    assert inputs["imageScanningConfiguration"]["scanOnPush"] is True
    assert inputs["imageTagMutability"] == "IMMUTABLE"
    assert inputs["encryptionConfigurations"][0]["encryptionType"] in ("AES256", "KMS")
    (lifecycle,) = program.of_type("aws:ecr/lifecyclePolicy:LifecyclePolicy")
    rules = json.loads(lifecycle.inputs["policy"])["rules"]
    assert {r["selection"]["tagStatus"] for r in rules} == {"untagged", "any"}
    assert all(r["action"]["type"] == "expire" for r in rules)
    (policy,) = program.of_type("aws:ecr/repositoryPolicy:RepositoryPolicy")
    (stmt,) = json.loads(policy.inputs["policy"])["Statement"]  # nothing else may pull or push
    assert stmt["Effect"] == "Allow"
    assert stmt["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert sorted(stmt["Action"]) == sorted(LAMBDA_PULL_ACTIONS)
    assert stmt["Condition"]["StringLike"]["aws:sourceArn"] == (
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:abalone-{program.stack}-*"
    )
    assert program.outputs["lambdaImageRepositoryUrl"] == (
        f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{repository_name(program.stack)}"
    )


def test_lambda_roles_get_no_ecr_permission(program):
    """Lambda pulls the image itself (repository policy); execution roles never need ECR."""
    for name, doc in role_documents(program).items():
        if re.search(r"-(gate|system-test|approval|promote|drift)-role-policy$", name):
            actions = [a for s in doc["Statement"] for a in as_list(s["Action"])]
            assert not [a for a in actions if a.startswith("ecr:")], name


def test_the_image_is_no_longer_a_config_value(dev):
    base = dev.config.model_dump(by_alias=True, exclude={"stack", "region"})
    with pytest.raises(ConfigError, match=r"unknown config key.*lambdaImageUri"):
        load_stack_config("dev", REGION, {**base, "lambdaImageUri": "x:1"})


def test_the_dockerfile_builds_the_lambda_image_from_the_project():
    text = (REPO / LAMBDA_DOCKERFILE).read_text()
    assert re.search(rf"^FROM {re.escape(BASE_IMAGE)}$", text, re.M)
    assert "components/lambda-requirements.txt" in text
    assert re.search(r"^ARG MODEL_RUNTIME_PINS", text, re.M)
    assert "-c /tmp/deps/constraints.txt" in text
    for package in ("jobs", "validation"):
        assert re.search(rf"^COPY {package}/ \$\{{LAMBDA_TASK_ROOT\}}/{package}/$", text, re.M)
    assert re.search(r'^CMD \["jobs\.aws\.handlers\.[a-z_]+_handler"\]$', text, re.M)


# ---- dependencies match the imports -----------------------------------------------------------------
#: import name → distribution name, where they differ
DISTRIBUTION = {"sklearn": "scikit-learn", "mlflow": "mlflow-skinny"}
#: imports reachable in the source but provided elsewhere or never reached on AWS
NOT_NEEDED = {
    "botocore": "comes with boto3",
    "sagemaker_inference": "optional import, provided by the SageMaker serving container",
    "sagemaker_containers": "optional import, the SageMaker scikit-learn image's model server",
    "uvicorn": "jobs.serve, the local HTTP server (local system test only)",
    "sqlalchemy": "tracking_store's probe of a database store (postgresql://, mysql://): on AWS the "
    "store is the tracking server; mlflow-skinny has no database store, and a database URI there "
    "ends in the one-line 'needs the module `sqlalchemy`' error",
}


def third_party_imports(*modules: str) -> set[str]:
    """Top-level third-party imports of ``modules`` and of the jobs/validation modules they import
    (transitively, including imports inside functions)."""
    seen: set[str] = set()
    found: set[str] = set()
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = REPO / (name.replace(".", "/") + ".py")
        if not path.is_file():
            path = REPO / name.replace(".", "/") / "__init__.py"
        if not path.is_file():
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            for imported in names:
                top = imported.split(".")[0]
                if top in ("jobs", "validation"):
                    todo.append(imported)
                elif top not in sys.stdlib_module_names:
                    found.add(top)
    return found


def requirement_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if line:
            names.add(re.split(r"[<>=!~\[ ]", line)[0].lower().replace("_", "-"))
    return names


def missing(imports: set[str], requirements: set[str]) -> list[str]:
    return sorted(
        name
        for name in imports - set(NOT_NEEDED)
        if DISTRIBUTION.get(name, name).lower().replace("_", "-") not in requirements
    )


def test_lambda_requirements_cover_every_import_of_the_handlers():
    imports = third_party_imports("jobs.aws.handlers")
    assert {"mlflow", "sklearn", "scipy", "great_expectations"} <= imports
    # the drift report draws inline SVG; jobs.training's plots never run in a Lambda
    assert "matplotlib" not in imports
    wanted = requirement_names((REPO / "components/lambda-requirements.txt").read_text())
    assert missing(imports, wanted) == []
    assert "sagemaker-mlflow" in wanted  # tracking URI is the server ARN


def test_the_checker_reports_a_missing_requirement():
    assert missing({"sklearn", "scipy"}, {"scikit-learn"}) == ["scipy"]


def test_sourcedir_requirements_cover_train_and_inference_and_pin_the_model_runtime(dev):
    sourcedir = dev.one("aws:s3/bucketObjectv2:BucketObjectv2", f"{dev.config.prefix}-sourcedir")
    with tarfile.open(sourcedir.inputs["source"].path) as tar:
        text = tar.extractfile("requirements.txt").read().decode()
    assert text == container_requirements()
    imports = third_party_imports("jobs.train", "jobs.inference")
    assert missing(imports, requirement_names(text)) == []
    for dist in ("scikit-learn", "numpy", "pandas", "cloudpickle", "joblib"):
        assert f"{dist}=={version(dist)}" in text.splitlines(), dist
    assert "sagemaker-mlflow" in requirement_names(text)


def test_the_image_pins_the_same_model_runtime_as_sagemaker():
    pins = lambda_build_args()["MODEL_RUNTIME_PINS"].split()
    assert f"scikit-learn=={version('scikit-learn')}" in pins
    assert set(pins) <= set(container_requirements().splitlines())


def test_sagemaker_images_run_python_3_11_or_later(program):
    """jobs/ needs Python ≥ 3.11 (datetime.UTC, pandas 3); the scikit-learn framework images up to
    1.5-2 run Python 3.10, 1.4-2-py312 runs 3.12."""
    for uri in (program.config.training_image_uri, program.config.inference_image_uri):
        assert uri.rsplit(":", 1)[-1] == "1.4-2-py312-cpu-py3", uri


# ---- IAM: every call a handler makes is allowed ------------------------------------------------------
def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def role_documents(program: Program) -> dict[str, dict[str, Any]]:
    return {r.name: json.loads(r.inputs["policy"]) for r in program.of_type(ROLE_POLICY)}


def allows(doc: dict[str, Any], action: str, resource: str, **context: str) -> bool:
    """Whether an Allow statement grants ``action`` on ``resource`` given the request context
    (``s3:prefix``, ``cloudwatch:namespace``). Unknown conditions never match."""
    for stmt in doc["Statement"]:
        if stmt["Effect"] != "Allow":
            continue
        if not any(fnmatch.fnmatchcase(action, a) for a in as_list(stmt["Action"])):
            continue
        if not any(fnmatch.fnmatchcase(resource, r) for r in as_list(stmt["Resource"])):
            continue
        if all(
            _condition_holds(op, key, values, context)
            for op, block in stmt.get("Condition", {}).items()
            for key, values in block.items()
        ):
            return True
    return False


def _condition_holds(op: str, key: str, values: Any, context: dict[str, str]) -> bool:
    actual = context.get(key.replace("s3:", "s3_").replace("cloudwatch:", "cloudwatch_"))
    if actual is None:
        return False
    if op == "StringEquals":
        return actual in as_list(values)
    if op == "StringLike":
        return any(fnmatch.fnmatchcase(actual, v) for v in as_list(values))
    return False


def test_allows_is_strict():
    doc = {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": ["arn:aws:s3:::b"],
                "Condition": {"StringLike": {"s3:prefix": ["capture/*"]}},
            },
            {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::b/a/*"]},
        ]
    }
    assert allows(doc, "s3:ListBucket", "arn:aws:s3:::b", s3_prefix="capture/x/")
    assert not allows(doc, "s3:ListBucket", "arn:aws:s3:::b", s3_prefix="raw/")
    assert not allows(doc, "s3:ListBucket", "arn:aws:s3:::b")
    assert allows(doc, "s3:GetObject", "arn:aws:s3:::b/a/k")
    assert not allows(doc, "s3:GetObject", "arn:aws:s3:::b/c/k")
    assert not allows(doc, "s3:PutObject", "arn:aws:s3:::b/a/k")


def test_the_drift_function_may_do_everything_drift_handler_does_and_no_more(program):
    doc = role_documents(program)[f"{program.config.prefix}-monitoring-drift-role-policy"]
    out = program.outputs
    data, artifacts, reports = (
        f"arn:aws:s3:::{out[k]}" for k in ("dataBucket", "artifactsBucket", "reportsBucket")
    )
    run = "mlflow/1/0123456789abcdef/artifacts"
    needed = [
        # capture (jobs.monitor reads SageMaker data capture)
        ("s3:ListBucket", data, {"s3_prefix": "capture/abalone-dev-production/"}),
        ("s3:GetObject", f"{data}/capture/ep/AllTraffic/2026/11/26/10/x.jsonl", {}),
        # latest validated upload to retrain on (latest_upload)
        ("s3:GetObject", f"{data}/curated/LATEST.json", {}),
        ("s3:GetObject", f"{data}/curated/v-0123/manifest.json", {}),
        ("s3:ListBucket", data, {"s3_prefix": "curated/LATEST.json"}),
        # the champion's reference profile from the MLflow artifact store
        ("s3:GetObject", f"{artifacts}/{run}/reference_profile.json", {}),
        ("s3:ListBucket", artifacts, {"s3_prefix": f"{run}/reference_profile.json"}),
        ("sagemaker-mlflow:GetModelVersionByAlias", out["trackingServerArn"], {}),
        # report, metric, retraining
        ("s3:PutObject", f"{reports}/monitoring/run-1/report.html", {}),
        (
            "cloudwatch:PutMetricData",
            "*",
            {"cloudwatch_namespace": f"Abalone/{program.stack}"},
        ),
        ("states:StartExecution", out["stateMachineArn"], {}),
        ("kms:Decrypt", out["kmsKeyArn"], {}),
        ("kms:GenerateDataKey", out["kmsKeyArn"], {}),
    ]
    denied = [(a, r) for a, r, ctx in needed if not allows(doc, a, r, **ctx)]
    assert denied == []
    excess = [
        ("s3:GetObject", f"{data}/raw/batch.csv", {}),
        ("s3:PutObject", f"{data}/curated/LATEST.json", {}),
        ("s3:PutObject", f"{artifacts}/{run}/reference_profile.json", {}),
        ("s3:GetObject", f"{artifacts}/code/sagemaker/sourcedir.tar.gz", {}),
        ("s3:ListBucket", data, {"s3_prefix": "raw/"}),
        ("cloudwatch:PutMetricData", "*", {"cloudwatch_namespace": "AWS/SageMaker"}),
        ("states:StartExecution", "arn:aws:states:us-east-1:123456789012:stateMachine:x", {}),
    ]
    assert [(a, r) for a, r, ctx in excess if allows(doc, a, r, **ctx)] == []


def test_gate_and_promote_may_load_models_from_the_artifact_store(program):
    docs = role_documents(program)
    artifacts = f"arn:aws:s3:::{program.outputs['artifactsBucket']}"
    model = "mlflow/1/models/m-0123/artifacts"
    for key in ("gate", "promote"):
        doc = docs[f"{program.config.prefix}-pipeline-{key}-role-policy"]
        assert allows(doc, "s3:GetObject", f"{artifacts}/{model}/model.pkl"), key
        assert allows(doc, "s3:ListBucket", artifacts, s3_prefix=f"{model}/"), key
        assert allows(doc, "s3:GetObject", f"{artifacts}/training/job-1/output/model.tar.gz"), key
        assert not allows(doc, "s3:PutObject", f"{artifacts}/{model}/model.pkl"), key


def test_every_lambda_has_what_the_runtime_needs_to_log_and_decrypt(program):
    for name, doc in role_documents(program).items():
        if not re.search(r"-(gate|system-test|approval|promote|drift)-role-policy$", name):
            continue
        assert allows(doc, "kms:Decrypt", program.outputs["kmsKeyArn"]), name
        assert any("logs:PutLogEvents" in as_list(s["Action"]) for s in doc["Statement"]), name


def test_the_readme_names_the_lambda_image_inputs():
    readme = (REPO / "README.md").read_text()
    assert LAMBDA_DOCKERFILE.as_posix() in readme
    assert "lambdaImageUri" in readme  # the stack output: the image the functions run
