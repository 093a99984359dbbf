"""The whole Pulumi program, run for dev and prd under mocks: every security and sizing rule.

Each test reads the inputs the program registered (what ``pulumi up`` would send to AWS).
"""

from __future__ import annotations

import ast
import importlib
import io
import json
import re
import tarfile
from typing import Any

import pulumi

from components import policies
from components.packaging import ENTRY_POINTS, GLUE_SCRIPT, lambda_context_files
from components.pipeline_definition import (
    GLUE_GET_RUN,
    GLUE_START,
    LAMBDA_INVOKE,
    SAGEMAKER_CREATE_TRAINING,
    SAGEMAKER_DESCRIBE_TRAINING,
    SNS_PUBLISH,
)
from tests.components import asl
from tests.components.harness import REPO, Program

BUCKET = "aws:s3/bucket:Bucket"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
FUNCTION = "aws:lambda/function:Function"


def by_bucket(program: Program, typ: str) -> dict[str, dict[str, Any]]:
    return {r.inputs["bucket"]: r.inputs for r in program.of_type(typ)}


def bucket_names(program: Program) -> dict[str, str]:
    """logical name → physical bucket name (the mock's bucket id)."""
    return {
        r.name: r.inputs.get("bucket") or _physical(program, r) for r in program.of_type(BUCKET)
    }


def _physical(program: Program, resource) -> str:
    from tests.components.mocks import physical_name

    return physical_name(resource.typ, resource.name, resource.inputs)


# ---- buckets ------------------------------------------------------------------------------------
def test_every_bucket_is_versioned_encrypted_private_and_tls_only(program):
    buckets = bucket_names(program)
    assert len(buckets) == 3, buckets
    versioning = by_bucket(program, "aws:s3/bucketVersioning:BucketVersioning")
    encryption = by_bucket(
        program,
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    )
    blocks = by_bucket(program, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    bucket_policies = by_bucket(program, "aws:s3/bucketPolicy:BucketPolicy")
    lifecycles = by_bucket(
        program, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
    )
    keys = program.of_type("aws:kms/key:Key")
    assert len(keys) == 1, "one customer managed key per stack"
    key_arn = f"arn:aws:kms:us-east-1:123456789012:key/{_physical(program, keys[0])}"
    for logical, name in buckets.items():
        assert versioning.get(name, {}).get("versioningConfiguration", {}).get("status") == (
            "Enabled"
        ), f"{logical}: versioning"
        rules = encryption.get(name, {}).get("rules") or [{}]
        default = rules[0].get("applyServerSideEncryptionByDefault", {})
        assert default.get("sseAlgorithm") == "aws:kms", f"{logical}: SSE-KMS"
        assert default.get("kmsMasterKeyId") == key_arn, f"{logical}: the stack's CMK"
        block = blocks.get(name, {})
        for flag in (
            "blockPublicAcls",
            "blockPublicPolicy",
            "ignorePublicAcls",
            "restrictPublicBuckets",
        ):
            assert block.get(flag) is True, f"{logical}: public access block {flag}"
        assert name in bucket_policies, f"{logical}: bucket policy"
        doc = json.loads(bucket_policies[name]["policy"])
        tls = [
            s
            for s in doc["Statement"]
            if s["Effect"] == "Deny"
            and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
            and s.get("Principal") == "*"
        ]
        assert tls, f"{logical}: TLS-only policy"
        assert set(tls[0]["Resource"]) == {f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"}
        expiry = [
            r
            for r in lifecycles.get(name, {}).get("rules", [])
            if r.get("status") == "Enabled" and r.get("noncurrentVersionExpiration")
        ]
        assert expiry, f"{logical}: lifecycle for noncurrent versions"
        assert expiry[0]["noncurrentVersionExpiration"]["noncurrentDays"] == (
            program.config.noncurrent_version_days
        )


def test_the_key_rotates_and_its_policy_names_explicit_actions(program):
    (key,) = program.of_type("aws:kms/key:Key")
    assert key.inputs["enableKeyRotation"] is True
    assert key.inputs["deletionWindowInDays"] == program.config.kms_deletion_window_days
    doc = json.loads(key.inputs["policy"])
    for stmt in doc["Statement"]:
        actions = stmt["Action"] if isinstance(stmt["Action"], list) else [stmt["Action"]]
        assert not [a for a in actions if "*" in a], f"key policy {stmt['Sid']}: wildcard action"


def test_the_data_bucket_sends_events_to_eventbridge(program):
    notes = program.of_type("aws:s3/bucketNotification:BucketNotification")
    assert [n.inputs["bucket"] for n in notes] == [program.outputs["dataBucket"]]
    assert notes[0].inputs["eventbridge"] is True


# ---- IAM ----------------------------------------------------------------------------------------
def policy_documents(program: Program) -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for r in program.of_type(ROLE_POLICY):
        docs.append((r.name, json.loads(r.inputs["policy"])))
    for r in program.of_type("aws:s3/bucketPolicy:BucketPolicy"):
        docs.append((r.name, json.loads(r.inputs["policy"])))
    for r in program.of_type("aws:sns/topicPolicy:TopicPolicy"):
        docs.append((r.name, json.loads(r.inputs["policy"])))
    return docs


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def iam_problems(name: str, doc: dict[str, Any]) -> list[str]:
    problems = []
    for stmt in doc["Statement"]:
        actions, resources = as_list(stmt["Action"]), as_list(stmt.get("Resource", []))
        sid = stmt.get("Sid", "?")
        if {"*", "*:*"} & set(actions):
            problems.append(f"{name}/{sid}: Action '*'")
        if stmt["Effect"] != "Allow":
            continue
        if "*" in resources:
            if [a for a in actions if "*" in a]:
                problems.append(f"{name}/{sid}: wildcard action on Resource '*'")
            unjustified = [a for a in actions if a not in policies.ALLOW_ANY_RESOURCE]
            if unjustified:
                problems.append(f"{name}/{sid}: {unjustified} on Resource '*' not justified")
        if any(r in ("arn:aws:s3:::*", "arn:aws:s3:::*/*") for r in resources):
            problems.append(f"{name}/{sid}: every bucket")
    return problems


def test_no_iam_policy_allows_star_actions_or_unjustified_star_resources(program):
    docs = policy_documents(program)
    assert len(docs) > 15
    problems = [p for name, doc in docs for p in iam_problems(name, doc)]
    assert problems == []


def test_the_iam_checker_catches_what_it_should():
    bad = {
        "Statement": [
            {"Sid": "a", "Effect": "Allow", "Action": "*", "Resource": "arn:aws:s3:::b"},
            {"Sid": "b", "Effect": "Allow", "Action": ["s3:*"], "Resource": "*"},
            {"Sid": "c", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"},
        ]
    }
    assert len(iam_problems("t", bad)) == 4


def test_no_managed_policies_and_roles_trust_exactly_their_service(program):
    expected = [
        (r"-mlflow-role$", "sagemaker.amazonaws.com"),
        (r"-validate-role$", "glue.amazonaws.com"),
        (r"-(gate|system-test|approval|promote|drift)-role$", "lambda.amazonaws.com"),
        (r"-training-role$", "sagemaker.amazonaws.com"),
        (r"-(staging|production)-role$", "sagemaker.amazonaws.com"),
        (r"-states-role$", "states.amazonaws.com"),
        (r"-events-role$", "events.amazonaws.com"),
        (r"-scheduler-role$", "scheduler.amazonaws.com"),
        (r"-build-role$", "codebuild.amazonaws.com"),
        (r"-pipeline-role$", "codepipeline.amazonaws.com"),
    ]
    roles = program.of_type(ROLE)
    assert roles
    for role in roles:
        assert not role.inputs.get("managedPolicyArns"), f"{role.name}: managed policies"
        trust = json.loads(role.inputs["assumeRolePolicy"])
        (stmt,) = trust["Statement"]
        assert stmt["Action"] == "sts:AssumeRole" and stmt["Effect"] == "Allow"
        assert set(stmt["Principal"]) == {"Service"}, f"{role.name}: only a service may assume"
        services = [svc for pattern, svc in expected if re.search(pattern, role.name)]
        assert services, f"{role.name}: no expected trust principal listed in this test"
        assert stmt["Principal"]["Service"] == services[0], role.name
    text = json.dumps([r.inputs for r in program.resources], default=str)
    assert "FullAccess" not in text


def test_every_role_has_a_scoped_inline_policy_and_pass_role_is_conditioned(program):
    policy_roles = {r.inputs["role"] for r in program.of_type(ROLE_POLICY)}
    for role in program.of_type(ROLE):
        assert f"{_physical(program, role)}-id" in policy_roles, f"{role.name}: no policy"
    for name, doc in policy_documents(program):
        for stmt in doc["Statement"]:
            if "iam:PassRole" in as_list(stmt["Action"]):
                assert stmt["Condition"]["StringEquals"]["iam:PassedToService"], name
                assert "*" not in as_list(stmt["Resource"]), name


def test_every_role_has_one_inline_policy_named_after_it_under_the_same_parent(program):
    # the names are part of the URNs: ``<x>-role`` and ``<x>-role-policy``, siblings
    role_policies = {r.name: r for r in program.of_type(ROLE_POLICY)}
    roles = program.of_type(ROLE)
    assert len(role_policies) == len(roles) > 10
    for role in roles:
        assert role.name.endswith("-role"), role.name
        policy = role_policies.get(f"{role.name}-policy")
        assert policy is not None, f"{role.name}: no {role.name}-policy"
        assert policy.inputs["role"] == f"{_physical(program, role)}-id", policy.name
        assert (
            policy.urn.split("::")[2].rsplit("$", 1)[0] == role.urn.split("::")[2].rsplit("$", 1)[0]
        ), f"{policy.name}: not a sibling of {role.name}"


def test_tracking_server_role_is_limited_to_its_artifact_prefix(program):
    doc = json.loads(
        program.one(ROLE_POLICY, f"{program.config.prefix}-mlflow-role-policy").inputs["policy"]
    )
    artifacts = program.outputs["artifactsBucket"]
    for stmt in doc["Statement"]:
        for resource in as_list(stmt["Resource"]):
            if resource.startswith("arn:aws:s3"):
                assert resource in (
                    f"arn:aws:s3:::{artifacts}/mlflow/*",
                    f"arn:aws:s3:::{artifacts}",
                ), resource
        if "s3:ListBucket" in stmt["Action"]:
            assert stmt["Condition"]["StringLike"]["s3:prefix"] == ["mlflow/*"]
    server = program.of_type("aws:sagemaker/mlflowTrackingServer:MlflowTrackingServer")[0]
    assert server.inputs["trackingServerSize"] == program.config.tracking_server_size
    assert server.inputs["artifactStoreUri"] == f"s3://{artifacts}/mlflow/"


# ---- tags, parents, names -----------------------------------------------------------------------
def resource_class(typ: str):
    module = typ.split(":")[1].split("/")[0]
    module = {"lambda": "lambda_"}.get(module, module)
    return getattr(importlib.import_module(f"pulumi_aws.{module}"), typ.split(":")[2])


def test_every_taggable_resource_carries_project_and_stack_tags(program):
    import inspect

    checked = 0
    for r in program.resources:
        if not r.typ.startswith("aws:"):
            continue
        if "tags" not in inspect.signature(resource_class(r.typ)._internal_init).parameters:
            continue
        tags = r.inputs.get("tags") or {}
        assert tags.get("project") == "abalone-mlops", f"{r.typ} {r.name}: project tag"
        assert tags.get("stack") == program.stack, f"{r.typ} {r.name}: stack tag"
        checked += 1
    assert checked > 40


def test_every_resource_is_a_child_of_its_component_and_named_after_it(program):
    components = [r for r in program.resources if r.typ.startswith("abalone:index:")]
    root = program.by_name[program.config.prefix]
    assert root.typ == "abalone:index:AbaloneMlops"
    assert root.parents == ["pulumi:pulumi:Stack"]
    for r in program.resources:
        if r is root:
            continue
        parent_type = r.parents[-1]
        if r.typ.startswith("abalone:index:"):
            assert parent_type == "abalone:index:AbaloneMlops", (
                f"{r.name}: components sit under root"
            )
            continue
        # the URN records the parent's type: it must be the component whose name prefixes ours
        owners = [c for c in components if r.name.startswith(f"{c.name}-")]
        assert owners, f"{r.name}: not named after a component"
        owner = max(owners, key=lambda c: len(c.name))
        assert parent_type == owner.typ, (
            f"{r.name}: parent is {parent_type}, expected {owner.typ} (missing parent=self?)"
        )
    expected = {
        "DataLake",
        "TrackingServer",
        "DataQualityEtl",
        "ModelEndpoint",
        "TrainingPipeline",
        "Monitoring",
    }
    assert expected <= {c.typ.split(":")[-1] for c in components}


def test_no_component_reads_pulumi_config_or_creates_resources_in_apply():
    for path in sorted((REPO / "components").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "Config":
                assert not (isinstance(node.value, ast.Name) and node.value.id == "pulumi"), (
                    f"{path.name} reads pulumi.Config"
                )
            if isinstance(node, ast.Lambda):
                for inner in ast.walk(node.body):
                    if isinstance(inner, ast.Call) and isinstance(inner.func, ast.Attribute):
                        base = inner.func.value
                        while isinstance(base, ast.Attribute):
                            base = base.value
                        assert not (
                            isinstance(base, ast.Name)
                            and base.id == "aws"
                            and inner.func.attr[:1].isupper()
                        ), f"{path.name}: resource created inside a lambda (apply)"
    main = (REPO / "__main__.py").read_text()
    assert "pulumi.Config(" in main and len(main.splitlines()) < 40


def test_components_register_outputs_as_the_last_statement():
    for path in sorted((REPO / "components").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(b, ast.Attribute) and b.attr == "ComponentResource" for b in node.bases
            ):
                init = next(
                    n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"
                )
                last = init.body[-1]
                assert isinstance(last, ast.Expr) and "register_outputs" in ast.unparse(last), (
                    f"{path.name}:{node.name}"
                )
                token = ast.unparse(init.body[0])
                assert f"'abalone:index:{node.name}'" in token, f"{node.name}: token"


# ---- endpoints ----------------------------------------------------------------------------------
def endpoint_parts(program: Program, role: str) -> dict[str, Any]:
    p = program.config.prefix
    return {
        "config": program.one(
            "aws:sagemaker/endpointConfiguration:EndpointConfiguration", f"{p}-{role}-config"
        ).inputs,
        "endpoint": program.one("aws:sagemaker/endpoint:Endpoint", f"{p}-{role}-endpoint").inputs,
        "targets": [
            t.inputs
            for t in program.of_type("aws:appautoscaling/target:Target")
            if f"/{p}-{role}/" in t.inputs["resourceId"]
        ],
        "policies": [
            t.inputs
            for t in program.of_type("aws:appautoscaling/policy:Policy")
            if f"/{p}-{role}/" in t.inputs["resourceId"]
        ],
    }


def test_prd_production_endpoint_has_two_instances_autoscaling_and_blue_green_rollback(prd):
    parts = endpoint_parts(prd, "production")
    (variant,) = parts["config"]["productionVariants"]
    assert variant["initialInstanceCount"] >= 2
    (target,) = parts["targets"]
    assert target["minCapacity"] >= 2 and target["maxCapacity"] > target["minCapacity"]
    assert target["scalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    (policy,) = parts["policies"]
    assert policy["policyType"] == "TargetTrackingScaling"
    tracking = policy["targetTrackingScalingPolicyConfiguration"]
    assert tracking["predefinedMetricSpecification"]["predefinedMetricType"] == (
        "SageMakerVariantInvocationsPerInstance"
    )
    deployment = parts["endpoint"]["deploymentConfig"]
    assert deployment["blueGreenUpdatePolicy"]["trafficRoutingConfiguration"]["type"] == "CANARY"
    alarms = {a["alarmName"] for a in deployment["autoRollbackConfiguration"]["alarms"]}
    existing = {
        a.inputs["name"]: a.inputs for a in prd.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    }
    assert alarms and alarms <= set(existing)
    assert {existing[a]["metricName"] for a in alarms} == {"Invocation5XXErrors", "ModelLatency"}


def test_dev_endpoints_are_single_small_instances_without_autoscaling(dev):
    for role in ("staging", "production"):
        parts = endpoint_parts(dev, role)
        (variant,) = parts["config"]["productionVariants"]
        assert variant["initialInstanceCount"] == 1
        assert variant["instanceType"] == dev.config.endpoint_instance_type
        assert not parts["targets"] and not parts["policies"]
        assert not parts["endpoint"].get("deploymentConfig")


def test_endpoints_capture_data_to_the_lake_under_kms(program):
    key = program.outputs["kmsKeyArn"]
    for role in ("staging", "production"):
        capture = endpoint_parts(program, role)["config"]["dataCaptureConfig"]
        assert capture["enableCapture"] is True
        assert capture["kmsKeyId"] == key
        assert capture["destinationS3Uri"] == f"s3://{program.outputs['dataBucket']}/capture/"
        assert {o["captureMode"] for o in capture["captureOptions"]} == {"Input", "Output"}


# ---- Glue job and code packages -----------------------------------------------------------------
def test_glue_job_runs_the_uploaded_entry_point_with_the_packaged_code(program):
    p = program.config.prefix
    job = program.one("aws:glue/job:Job", f"{p}-validate-job").inputs
    assert job["glueVersion"] == "5.0"
    assert job["command"]["name"] == "glueetl" and job["command"]["pythonVersion"] == "3"
    script = program.one("aws:s3/bucketObjectv2:BucketObjectv2", f"{p}-validate-script").inputs
    libs = program.one("aws:s3/bucketObjectv2:BucketObjectv2", f"{p}-validate-libraries").inputs
    artifacts = program.outputs["artifactsBucket"]
    assert job["command"]["scriptLocation"] == f"s3://{artifacts}/{script['key']}"
    assert isinstance(script["source"], pulumi.FileAsset)
    assert script["source"].path.endswith(GLUE_SCRIPT)
    args, fixed = job["defaultArguments"], job["nonOverridableArguments"]
    assert args["--extra-py-files"] == f"s3://{artifacts}/{libs['key']}"
    assert args["--tracking_server_arn"] == program.outputs["trackingServerArn"]
    assert fixed == {
        "--lake": f"s3://{program.outputs['dataBucket']}",
        "--reports": f"s3://{program.outputs['reportsBucket']}",
        "--env": program.stack,
    }
    assert isinstance(libs["source"], pulumi.AssetArchive)
    for obj in program.of_type("aws:s3/bucketObjectv2:BucketObjectv2"):
        assert obj.inputs["serverSideEncryption"] == "aws:kms", obj.name


def archive_members(archive: pulumi.AssetArchive) -> set[str]:
    return set(archive.assets)


def test_code_archives_contain_the_entry_points_and_the_gx_suite(program):
    missing_files = [rel for rel in ENTRY_POINTS if not (REPO / rel).is_file()]
    assert missing_files == [], f"entry points missing from the tree: {missing_files}"
    p = program.config.prefix
    libs = program.one("aws:s3/bucketObjectv2:BucketObjectv2", f"{p}-validate-libraries")
    members = archive_members(libs.inputs["source"])
    for rel in (*ENTRY_POINTS, "validation/suite.py"):
        assert rel in members, f"Glue/Lambda archive lacks {rel}"
    # the Glue ingest builds Data Docs: the vendored report assets and their licences ship too
    assets = REPO / "validation" / "assets"
    vendored = {p.relative_to(REPO).as_posix() for p in assets.rglob("*") if p.is_file()}
    assert "validation/assets/bootstrap@4.3.1/LICENSE" in vendored
    assert vendored <= members, f"Glue/Lambda archive lacks {sorted(vendored - members)[:3]}"
    assert not [m for m in members if "__pycache__" in m]
    # the Lambda image copies the same packages (its build context keeps jobs/ and validation/)
    assert members <= set(lambda_context_files())
    sourcedir = program.one("aws:s3/bucketObjectv2:BucketObjectv2", f"{p}-sourcedir").inputs
    with tarfile.open(sourcedir["source"].path) as tar:
        names = set(tar.getnames())
        shim = tar.extractfile("train.py").read().decode()
        serving = tar.extractfile("inference.py").read().decode()
    for rel in (
        "jobs/train.py",
        "jobs/inference.py",
        "validation/suite.py",
        "train.py",
        "inference.py",
        "requirements.txt",
    ):
        assert rel in names, f"sourcedir.tar.gz lacks {rel}"
    assert 'run_module("jobs.train"' in shim
    assert "from jobs.inference import model_fn, transform_fn" in serving


def test_sourcedir_is_reproducible(tmp_path):
    import shutil

    from components.packaging import PACKAGES, build_sourcedir

    snapshot = tmp_path / "tree"  # other work may edit the tree meanwhile: build from a copy
    for package in PACKAGES:
        shutil.copytree(
            REPO / package, snapshot / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    a = build_sourcedir(tmp_path / "a", snapshot).read_bytes()
    b = build_sourcedir(tmp_path / "b", snapshot).read_bytes()
    assert a == b
    with tarfile.open(fileobj=io.BytesIO(a)) as tar:
        assert {m.mtime for m in tar.getmembers()} == {0}


def test_lambda_handlers_named_by_the_program_exist_in_jobs_aws_handlers(program):
    path = REPO / "jobs/aws/handlers.py"
    assert path.is_file(), "jobs/aws/handlers.py is missing"
    defined = {n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef)}
    commands = [fn.inputs["imageConfig"]["commands"] for fn in program.of_type(FUNCTION)]
    assert all(len(c) == 1 and c[0].startswith("jobs.aws.handlers.") for c in commands)
    wanted = {c[0].rsplit(".", 1)[-1] for c in commands}
    assert {"gate_handler", "system_test_handler", "approval_handler", "promote_handler"} <= wanted
    missing = sorted(wanted - defined)
    assert missing == [], f"jobs/aws/handlers.py does not define {', '.join(missing)}"


# ---- state machine and trigger ------------------------------------------------------------------
def test_deployed_definition_is_valid_and_wired_to_the_stack(program):
    d = program.definition
    assert asl.all_problems(d) == []
    states, outputs = d["States"], program.outputs
    assert {
        GLUE_START,
        GLUE_GET_RUN,
        SAGEMAKER_CREATE_TRAINING,
        SAGEMAKER_DESCRIBE_TRAINING,
        LAMBDA_INVOKE,
        SNS_PUBLISH,
    } <= asl.task_resources(d)
    assert states["StartValidation"]["Parameters"]["JobName"] == outputs["glueJobName"]
    functions = {f.name: f for f in program.of_type(FUNCTION)}
    p = program.config.prefix
    for state, key in (("Gate", "gate"), ("SystemTest", "system-test"), ("Promote", "promote")):
        fn = functions[f"{p}-pipeline-{key}-function"]
        assert states[state]["Parameters"]["FunctionName"].endswith(
            f":function:{_physical(program, fn)}"
        )
    assert ("CheckApproval" in states) == program.config.require_approval
    if program.config.require_approval:
        timeout = program.config.approval_timeout_hours * 3600
        assert any(
            c.get("NumericGreaterThanEquals") == timeout for c in states["IsApproved"]["Choices"]
        )
    for name, state in states.items():
        if state.get("Resource") == SNS_PUBLISH:
            assert state["Parameters"]["TopicArn"] == outputs["alertsTopicArn"], name
    sm = program.one("aws:sfn/stateMachine:StateMachine", f"{p}-pipeline-state-machine").inputs
    assert json.loads(sm["definition"]) == d
    assert sm["loggingConfiguration"]["level"] in ("ERROR", "ALL")
    assert sm["encryptionConfiguration"]["kmsKeyId"] == outputs["kmsKeyArn"]


def test_new_raw_objects_start_the_pipeline(program):
    p = program.config.prefix
    rule = program.one("aws:cloudwatch/eventRule:EventRule", f"{p}-pipeline-raw-object-created")
    pattern = json.loads(rule.inputs["eventPattern"])
    assert pattern["source"] == ["aws.s3"] and pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["bucket"]["name"] == [program.outputs["dataBucket"]]
    assert pattern["detail"]["object"]["key"] == [{"prefix": "raw/"}]
    target = program.one(
        "aws:cloudwatch/eventTarget:EventTarget", f"{p}-pipeline-raw-object-created-target"
    ).inputs
    assert target["arn"] == program.outputs["stateMachineArn"]
    transformer = target["inputTransformer"]
    assert transformer["inputPaths"] == {
        "bucket": "$.detail.bucket.name",
        "key": "$.detail.object.key",
    }
    assert json.loads(
        transformer["inputTemplate"].replace("<bucket>", '"b"').replace("<key>", '"k"')
    ) == {"bucket": "b", "key": "k"}


def test_failures_reach_the_alert_email(program):
    (sub,) = program.of_type("aws:sns/topicSubscription:TopicSubscription")
    assert sub.inputs["protocol"] == "email"
    assert sub.inputs["endpoint"] == program.config.alert_email
    (topic,) = program.of_type("aws:sns/topic:Topic")
    assert topic.inputs["kmsMasterKeyId"] == program.outputs["kmsKeyArn"]


# ---- monitoring ---------------------------------------------------------------------------------
def test_alarms_cover_errors_latency_pipeline_data_quality_and_drift(program):
    p = program.config.prefix
    alarms = {
        a.name.removeprefix(f"{p}-monitoring-"): a.inputs
        for a in program.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
        if a.name.startswith(f"{p}-monitoring-")
    }
    assert set(alarms) == {
        "endpoint-5xx",
        "endpoint-latency-p99",
        "pipeline-failed",
        "data-quality-rejected",
        "drift",
    }
    for name, alarm in alarms.items():
        assert alarm["alarmActions"] == [program.outputs["alertsTopicArn"]], name
    assert alarms["endpoint-latency-p99"]["extendedStatistic"] == "p99"
    assert (
        alarms["endpoint-latency-p99"]["dimensions"]["EndpointName"]
        == program.outputs["productionEndpoint"]
    )
    assert alarms["pipeline-failed"]["dimensions"] == {
        "StateMachineArn": program.outputs["stateMachineArn"]
    }
    assert alarms["drift"]["threshold"] == program.config.drift_psi_threshold
    (metric_filter,) = program.of_type("aws:cloudwatch/logMetricFilter:LogMetricFilter")
    assert "DataQualityRejected" in metric_filter.inputs["pattern"]
    assert (
        metric_filter.inputs["metricTransformation"]["name"]
        == alarms["data-quality-rejected"]["metricName"]
    )
    (schedule,) = program.of_type("aws:scheduler/schedule:Schedule")
    assert schedule.inputs["scheduleExpression"] == program.config.drift_schedule
    assert schedule.inputs["target"]["arn"].endswith(
        _physical(program, program.one(FUNCTION, f"{p}-monitoring-drift-function"))
    )
    (board,) = program.of_type("aws:cloudwatch/dashboard:Dashboard")
    assert json.loads(board.inputs["dashboardBody"])["widgets"]
    assert program.outputs["dashboardUrl"].endswith(
        f"#dashboards:name={board.inputs['dashboardName']}"
    )


def test_drift_function_is_sized_for_a_day_of_capture_at_the_autoscaling_ceiling(program):
    """Sized from benchmarks/monitor_scale.py (10.8 M records: 460 MB peak, 90 s on one core):
    one full vCPU (1,769 MB) and ~6x the measured time, within Lambda's 900 s limit."""
    p = program.config.prefix
    fn = program.one(FUNCTION, f"{p}-monitoring-drift-function").inputs
    assert fn["memorySize"] == 1769
    assert fn["timeout"] == 600
    readme = (REPO / "README.md").read_text()
    assert "1,769 MB" in readme and "600 s" in readme  # the cost section states the same


def test_endpoint_health_alarms_use_the_configured_thresholds_in_the_metric_units(program):
    # production alarms (Monitoring) and blue/green rollback alarms (ModelEndpoint) alike
    alarms = program.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    latency = [a.inputs for a in alarms if a.inputs["metricName"] == "ModelLatency"]
    errors = [a.inputs for a in alarms if a.inputs["metricName"] == "Invocation5XXErrors"]
    # one pair per endpoint (staging, production; the rollback alarms) + the production alarms
    assert len(latency) == len(errors) == 3
    for alarm in latency:  # ModelLatency is reported in microseconds
        assert alarm["threshold"] == program.config.latency_p99_alarm_ms * 1000
        assert alarm["extendedStatistic"] == "p99" and "statistic" not in alarm
        assert alarm["comparisonOperator"] == "GreaterThanThreshold"
    for alarm in errors:
        assert alarm["threshold"] == program.config.error_5xx_alarm_threshold
        assert alarm["statistic"] == "Sum"
        assert alarm["comparisonOperator"] == "GreaterThanOrEqualToThreshold"
    for alarm in latency + errors:
        assert alarm["namespace"] == "AWS/SageMaker"
        assert alarm["dimensions"]["VariantName"] == "AllTraffic"


# ---- delivery -----------------------------------------------------------------------------------
def test_prd_has_a_v2_pipeline_test_deploy_dev_approve_deploy_prd(prd, dev):
    assert not dev.of_type("aws:codepipeline/pipeline:Pipeline")
    (pipe,) = prd.of_type("aws:codepipeline/pipeline:Pipeline")
    assert pipe.inputs["pipelineType"] == "V2"
    stages = [s["name"] for s in pipe.inputs["stages"]]
    assert stages == ["Source", "Test", "Deploy-dev", "Approve-prd", "Deploy-prd"]
    source = pipe.inputs["stages"][0]["actions"][0]
    assert source["provider"] == "CodeStarSourceConnection"
    assert source["configuration"]["ConnectionArn"] == prd.config.connection_arn
    approval = pipe.inputs["stages"][3]["actions"][0]
    assert (approval["category"], approval["provider"]) == ("Approval", "Manual")
    for stage, stack in ((2, "dev"), (4, "prd")):
        cfg = pipe.inputs["stages"][stage]["actions"][0]["configuration"]
        assert json.loads(cfg["EnvironmentVariables"]) == [
            {"name": "STACK", "value": stack, "type": "PLAINTEXT"}
        ]
    deploy = next(
        p for p in prd.of_type("aws:codebuild/project:Project") if p.name.endswith("-deploy")
    )
    spec = deploy.inputs["source"]["buildspec"]
    assert "pulumi preview" in spec and "pulumi up" in spec
    # pulumi up is the whole deploy: no manual image, layer or seed steps around it
    for manual in ("lambdaImageUri", "lambda-layer", "seed-model", "docker push"):
        assert manual not in spec, manual
    # it builds the Lambda image, which needs the Docker daemon of a privileged build container
    assert deploy.inputs["environment"]["privilegedMode"] is True
    test = next(p for p in prd.of_type("aws:codebuild/project:Project") if p.name.endswith("-test"))
    assert not test.inputs["environment"].get("privilegedMode")


# ---- outputs, SSM, stack differences ------------------------------------------------------------
def test_outputs_are_exported_and_published_as_ssm_parameters(program):
    for key in (
        "dataBucket",
        "artifactsBucket",
        "reportsBucket",
        "stateMachineArn",
        "trackingServerArn",
        "trackingServerUrl",
        "stagingEndpoint",
        "productionEndpoint",
        "dashboardUrl",
    ):
        assert program.outputs.get(key), key
    params = {
        p.inputs["name"]: p.inputs["insecureValue"]
        for p in program.of_type("aws:ssm/parameter:Parameter")
    }
    assert (
        params[f"/abalone/{program.stack}/state-machine-arn"] == program.outputs["stateMachineArn"]
    )
    assert params[f"/abalone/{program.stack}/data-bucket"] == program.outputs["dataBucket"]
    assert (
        params[f"/abalone/{program.stack}/tracking-server-arn"]
        == program.outputs["trackingServerArn"]
    )
    assert len(params) == len(program.outputs)
    sources = [*(REPO / "components").glob("*.py"), REPO / "__main__.py"]
    account_ids = {
        p.name: re.findall(r"(?<![0-9])[0-9]{12}(?![0-9])", p.read_text()) for p in sources
    }
    assert {k: v for k, v in account_ids.items() if v} == {}, "account ids in code"


#: (type, input) pairs that may differ between dev and prd because the stack config says so.
CONFIG_DRIVEN = {
    ("aws:kms/key:Key", "deletionWindowInDays"): "kmsDeletionWindowDays",
    ("aws:s3/bucket:Bucket", "forceDestroy"): "forceDestroyBuckets",
    ("aws:ecr/repository:Repository", "forceDelete"): "forceDestroyBuckets",
    (
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
        "rules",
    ): "noncurrentVersionDays",
    ("aws:cloudwatch/logGroup:LogGroup", "retentionInDays"): "logRetentionDays",
    (
        "aws:sagemaker/mlflowTrackingServer:MlflowTrackingServer",
        "trackingServerSize",
    ): "trackingServerSize",
    (
        "aws:sagemaker/endpointConfiguration:EndpointConfiguration",
        "productionVariants",
    ): "endpoint*/stagingInstanceType",
    ("aws:sagemaker/endpoint:Endpoint", "deploymentConfig"): "blueGreen",
    (
        "aws:sfn/stateMachine:StateMachine",
        "definition",
    ): "requireApproval/approvalTimeoutHours/blueGreen",
    ("aws:lambda/function:Function", "environment"): "requireApproval",
}


def normalise(value: Any, stack: str) -> str:
    text = json.dumps(value, sort_keys=True, default=lambda o: type(o).__name__)
    text = re.sub(r"abalone-(dev|prd)-[a-z0-9-]*?-[0-9a-f]{7}\b", "PHYSICAL", text)
    return re.sub(rf"(?<![A-Za-z0-9]){stack}(?![A-Za-z0-9])", "STACK", text)


def test_dev_and_prd_differ_only_where_the_config_says(dev, prd):
    def index(program: Program) -> dict[tuple[str, str], dict[str, Any]]:
        return {
            (r.typ, r.name.replace(program.config.prefix, "P")): r.inputs for r in program.resources
        }

    d, p = index(dev), index(prd)
    only_prd = {k for k in set(p) - set(d)}
    assert set(d) - set(p) == set()
    assert all(
        "cicd" in name or "scaling" in name or name.endswith("deliveryPipeline")
        for _, name in only_prd
    ), sorted(only_prd)
    unexpected = []
    for key in sorted(set(d) & set(p)):
        for prop in sorted(set(d[key]) | set(p[key])):
            a = normalise(d[key].get(prop), "dev")
            b = normalise(p[key].get(prop), "prd")
            if a != b and (key[0], prop) not in CONFIG_DRIVEN:
                unexpected.append(f"{key[0]} {key[1]}.{prop}")
    assert unexpected == []


def test_the_stack_name_alone_changes_nothing_but_names(dev, dev_values_as_prd):
    """Same config values, other stack name → the same resources and inputs (after renaming):
    the program never branches on the stack name, only on config."""

    def index(program: Program, stack: str) -> dict[tuple[str, str], str]:
        return {
            (r.typ, r.name.replace(program.config.prefix, "P")): normalise(r.inputs, stack)
            for r in program.resources
        }

    a, b = index(dev, "dev"), index(dev_values_as_prd, "prd")
    assert set(a) == set(b)
    assert [key for key in sorted(a) if a[key] != b[key]] == []
