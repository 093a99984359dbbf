"""Mocks that record each registered resource and answer with plausible AWS outputs."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pulumi

ACCOUNT = "123456789012"
REGION = "us-east-1"

# type token → (service, ARN resource format); {name} is the physical name.
ARN_FORMATS: dict[str, str] = {
    "aws:s3/bucket:Bucket": "arn:aws:s3:::{name}",
    "aws:iam/role:Role": "arn:aws:iam::{account}:role/{name}",
    "aws:kms/key:Key": "arn:aws:kms:{region}:{account}:key/{name}",
    "aws:lambda/function:Function": "arn:aws:lambda:{region}:{account}:function:{name}",
    "aws:lambda/layerVersion:LayerVersion": "arn:aws:lambda:{region}:{account}:layer:{name}:1",
    "aws:sfn/stateMachine:StateMachine": "arn:aws:states:{region}:{account}:stateMachine:{name}",
    "aws:sns/topic:Topic": "arn:aws:sns:{region}:{account}:{name}",
    "aws:glue/job:Job": "arn:aws:glue:{region}:{account}:job/{name}",
    "aws:cloudwatch/logGroup:LogGroup": "arn:aws:logs:{region}:{account}:log-group:{name}",
    "aws:cloudwatch/metricAlarm:MetricAlarm": "arn:aws:cloudwatch:{region}:{account}:alarm:{name}",
    "aws:sagemaker/endpoint:Endpoint": "arn:aws:sagemaker:{region}:{account}:endpoint/{name}",
    "aws:sagemaker/model:Model": "arn:aws:sagemaker:{region}:{account}:model/{name}",
    "aws:sagemaker/endpointConfiguration:EndpointConfiguration": (
        "arn:aws:sagemaker:{region}:{account}:endpoint-config/{name}"
    ),
    "aws:sagemaker/mlflowTrackingServer:MlflowTrackingServer": (
        "arn:aws:sagemaker:{region}:{account}:mlflow-tracking-server/{name}"
    ),
    "aws:codebuild/project:Project": "arn:aws:codebuild:{region}:{account}:project/{name}",
    "aws:codepipeline/pipeline:Pipeline": "arn:aws:codepipeline:{region}:{account}:{name}",
    "aws:ecr/repository:Repository": "arn:aws:ecr:{region}:{account}:repository/{name}",
    "aws:dynamodb/table:Table": "arn:aws:dynamodb:{region}:{account}:table/{name}",
}
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
#: pulumi-docker-build's image resource: built and pushed by the provider, here only recorded
DOCKER_IMAGE = "docker-build:index:Image"
# input property holding the physical name, where it is not ``name``
NAME_PROPERTY = {
    "aws:s3/bucket:Bucket": "bucket",
    "aws:sagemaker/mlflowTrackingServer:MlflowTrackingServer": "trackingServerName",
    "aws:cloudwatch/dashboard:Dashboard": "dashboardName",
    "aws:lambda/layerVersion:LayerVersion": "layerName",
}


def physical_name(typ: str, name: str, inputs: dict[str, Any]) -> str:
    given = inputs.get(NAME_PROPERTY.get(typ, "name"))
    if given:
        return given
    suffix = hashlib.sha256(f"{typ}/{name}".encode()).hexdigest()[:7]
    return f"{name}-{suffix}".lower() if typ == "aws:s3/bucket:Bucket" else f"{name}-{suffix}"


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.registered: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[str] = []

    def reset(self) -> None:
        self.registered.clear()
        self.calls.clear()

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        key = (args.typ, args.name)
        if key in self.registered:
            raise AssertionError(f"duplicate resource {args.typ} {args.name}")
        self.registered[key] = dict(args.inputs)
        if not args.custom:
            return [f"{args.name}-id", {}]
        physical = physical_name(args.typ, args.name, args.inputs)
        outputs = dict(args.inputs)
        fmt = ARN_FORMATS.get(args.typ)
        if fmt:
            outputs["arn"] = fmt.format(region=REGION, account=ACCOUNT, name=physical)
        outputs.setdefault(NAME_PROPERTY.get(args.typ, "name"), physical)
        if args.typ == "aws:s3/bucket:Bucket":
            return [physical, outputs]
        if args.typ == "aws:kms/key:Key":
            outputs["keyId"] = physical
        if args.typ == "aws:sagemaker/mlflowTrackingServer:MlflowTrackingServer":
            outputs["trackingServerUrl"] = (
                f"https://t-{physical}.{REGION}.experiments.sagemaker.aws"
            )
        if args.typ == "aws:ecr/repository:Repository":
            outputs["repositoryUrl"] = f"{REGISTRY}/{physical}"
            outputs["registryId"] = ACCOUNT
        if args.typ == DOCKER_IMAGE:
            return [f"{args.name}-id", image_outputs(dict(args.inputs))]
        return [f"{physical}-id", outputs]

    def call(self, args: pulumi.runtime.MockCallArgs):
        self.calls.append(args.token)
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": ACCOUNT,
                "arn": f"arn:aws:iam::{ACCOUNT}:user/unit",
                "id": ACCOUNT,
                "userId": "AIDAUNIT",
            }
        if args.token == "aws:ecr/getAuthorizationToken:getAuthorizationToken":
            registry = args.args.get("registryId") or ACCOUNT
            return {
                "authorizationToken": "QVdTOnVuaXQtdG9rZW4=",  # base64 "AWS:unit-token"
                "expiresAt": "2099-01-01T00:00:00Z",
                "id": REGION,
                "password": "unit-token",
                "proxyEndpoint": f"https://{registry}.dkr.ecr.{REGION}.amazonaws.com",
                "registryId": registry,
                "userName": "AWS",
            }
        raise NotImplementedError(f"unexpected invoke {args.token}")


def image_outputs(inputs: dict[str, Any]) -> dict[str, Any]:
    """What pulumi-docker-build reports after a push: the manifest digest (here a digest of the
    build inputs, so another context, tag or build argument gives another digest) and the ref."""
    tags = inputs.get("tags") or []
    basis = {k: inputs.get(k) for k in ("context", "dockerfile", "buildArgs", "platforms")}
    basis["tags"] = [t.rsplit(":", 1)[-1] for t in tags]  # the content, not the repository
    text = json.dumps(basis, sort_keys=True, default=str)
    digest = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return {
        **inputs,
        "digest": digest,
        "ref": f"{tags[0].rsplit(':', 1)[0]}@{digest}" if tags else digest,
        "contextHash": hashlib.sha256(str(inputs.get("context")).encode()).hexdigest(),
    }
