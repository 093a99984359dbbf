"""IAM policy building blocks and the list of ``Resource: "*"`` exceptions.

Rules every policy in the stack follows (asserted by ``tests/components``):

- no statement has ``Action: "*"``; service-wide actions (``svc:*``) only on named resources;
- no ``Allow`` on ``Resource: "*"`` unless *every* action of the statement is listed in
  :data:`ALLOW_ANY_RESOURCE`, each with the reason AWS requires it;
- no ``*FullAccess`` managed policy is attached; roles use inline policies scoped to their buckets,
  prefixes, job names and the tracking server ARN;
- every role trusts exactly one service principal (:func:`assume_role_policy`).

KMS key policies are resource policies where ``"Resource": "*"`` means "this key" (AWS requires
``*`` there); they list their actions explicitly (no ``kms:*``, no wildcard actions at all).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import pulumi
import pulumi_aws as aws

#: Actions AWS only authorises on ``Resource: "*"`` (no resource-level permissions).
ALLOW_ANY_RESOURCE: dict[str, str] = {
    # CloudWatch metrics have no ARN; we narrow with a cloudwatch:namespace condition instead.
    "cloudwatch:PutMetricData": "metrics have no resource ARN; scoped by cloudwatch:namespace",
    # Pulling the AWS-owned SageMaker scikit-learn image: the auth token call is account-wide.
    "ecr:GetAuthorizationToken": "the ECR auth token is account-wide, it has no resource ARN",
    # Step Functions logging to CloudWatch Logs uses log *deliveries*, which have no ARN
    # (documented in the Step Functions developer guide, "IAM policies for logging").
    "logs:CreateLogDelivery": "log deliveries have no ARN (Step Functions logging)",
    "logs:GetLogDelivery": "log deliveries have no ARN (Step Functions logging)",
    "logs:UpdateLogDelivery": "log deliveries have no ARN (Step Functions logging)",
    "logs:DeleteLogDelivery": "log deliveries have no ARN (Step Functions logging)",
    "logs:ListLogDeliveries": "log deliveries have no ARN (Step Functions logging)",
    "logs:PutResourcePolicy": "account-level resource policy (Step Functions logging)",
    "logs:DescribeResourcePolicies": "account-level resource policy (Step Functions logging)",
    "logs:DescribeLogGroups": "listing call without resource-level permissions",
}

#: MLflow calls on the tracking server (service prefix ``sagemaker-mlflow``), all of which take the
#: tracking-server ARN as resource. Not ``sagemaker-mlflow:*``: that includes ``AccessUI`` (opening
#: the MLflow UI), which has no resource type in the Service Authorization Reference (it needs
#: ``Resource: "*"``) and which no job needs; people open the UI with a presigned URL.
MLFLOW_READ = ("Get*", "List*", "Search*")
#: Tracking and registering (training), tagging versions with the gate decision, moving aliases
#: (gate, promote) and deleting a half-registered version (training's clean-up).
MLFLOW_WRITE = (
    "Create*",
    "DeleteModelVersion",
    "DeleteRegisteredModelAlias",
    "Log*",
    "Set*",
    "Update*",
)
#: MLflow 3's ``log_model`` finalizes the LoggedModel it created. A statement of its own: the
#: action is in the Service Authorization Reference but newer than parliament's bundled copy of it,
#: which stops analysing a statement at an action it does not know (tests/components allowlist).
MLFLOW_FINALIZE = "FinalizeLoggedModel"

SERVICE = {
    "glue": "glue.amazonaws.com",
    "sagemaker": "sagemaker.amazonaws.com",
    "states": "states.amazonaws.com",
    "lambda": "lambda.amazonaws.com",
    "events": "events.amazonaws.com",
    "scheduler": "scheduler.amazonaws.com",
    "codebuild": "codebuild.amazonaws.com",
    "codepipeline": "codepipeline.amazonaws.com",
    "appautoscaling": "sagemaker.application-autoscaling.amazonaws.com",
}

#: Log groups the stack creates, encrypted with the stack key.
ENCRYPTED_LOG_GROUP_PREFIXES = ("/abalone/", "/aws/vendedlogs/states/abalone-")
KMS_USE = ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
KMS_ADMIN = [
    "kms:CancelKeyDeletion",
    "kms:CreateAlias",
    "kms:CreateGrant",
    "kms:Decrypt",
    "kms:DeleteAlias",
    "kms:DescribeKey",
    "kms:DisableKey",
    "kms:DisableKeyRotation",
    "kms:EnableKey",
    "kms:EnableKeyRotation",
    "kms:Encrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:ListGrants",
    "kms:ListKeyPolicies",
    "kms:ListResourceTags",
    "kms:PutKeyPolicy",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:RetireGrant",
    "kms:RevokeGrant",
    "kms:RotateKeyOnDemand",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateAlias",
    "kms:UpdateKeyDescription",
]


def statement(
    actions: Sequence[str],
    resources: Sequence[Any] | Any,
    *,
    sid: str | None = None,
    conditions: dict[str, Any] | None = None,
    effect: str = "Allow",
) -> dict[str, Any]:
    """One IAM statement (values may be Pulumi Outputs; :func:`document` resolves them)."""
    stmt: dict[str, Any] = {
        "Effect": effect,
        "Action": sorted(actions),
        "Resource": list(resources) if isinstance(resources, list | tuple) else resources,
    }
    if sid:
        stmt["Sid"] = sid
    if conditions:
        stmt["Condition"] = conditions
    return stmt


def any_resource(actions: Sequence[str], *, sid: str, conditions: dict | None = None) -> dict:
    """A ``Resource: "*"`` statement; only actions AWS cannot scope are accepted."""
    unknown = [a for a in actions if a not in ALLOW_ANY_RESOURCE]
    if unknown:
        raise ValueError(f"{', '.join(unknown)} must be scoped to resources (not '*')")
    return statement(actions, "*", sid=sid, conditions=conditions)


def document(statements: Sequence[dict[str, Any]]) -> pulumi.Output[str]:
    """A policy document as a JSON string Output (nested Outputs resolved, no resources made)."""
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": list(statements)})


def assume_role_policy(service: str) -> str:
    """Trust policy for exactly one AWS service principal."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": SERVICE[service]},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    )


class ServiceRole(NamedTuple):
    role: aws.iam.Role
    #: The inline policy; resources that need the permissions at creation ``depends_on`` it.
    policy: aws.iam.RolePolicy


def service_role(
    name: str,
    *,
    service: str,
    description: str,
    statements: Sequence[dict[str, Any]],
    tags: Mapping[str, str],
    opts: pulumi.ResourceOptions,
) -> ServiceRole:
    """A role only ``service`` may assume, with its one inline policy of ``statements``.

    Resources ``f"{name}-role"`` and ``f"{name}-role-policy"``, both registered with ``opts``
    (normally ``parent=<the component>``); the role carries ``tags``.
    """
    role = aws.iam.Role(
        f"{name}-role",
        description=description,
        assume_role_policy=assume_role_policy(service),
        tags=tags,
        opts=opts,
    )
    policy = aws.iam.RolePolicy(
        f"{name}-role-policy", role=role.id, policy=document(statements), opts=opts
    )
    return ServiceRole(role, policy)


def bucket_objects(bucket_arn: pulumi.Input[str], *prefixes: str) -> list[pulumi.Output[str]]:
    """Object ARNs under the given prefixes (``""`` means the whole bucket)."""
    return [pulumi.Output.concat(bucket_arn, "/", prefix, "*") for prefix in prefixes]


def objects(
    actions: Sequence[str], bucket_arn: pulumi.Input[str], *prefixes: str, sid: str
) -> dict[str, Any]:
    """``actions`` on the objects under the prefixes of one bucket (``""``: the whole bucket)."""
    return statement(actions, bucket_objects(bucket_arn, *prefixes), sid=sid)


def list_bucket(bucket_arn: pulumi.Input[str], *prefixes: str, sid: str) -> list[dict[str, Any]]:
    """``s3:ListBucket`` on one bucket, limited to the prefixes, and ``s3:GetBucketLocation``.

    Two statements: ``s3:prefix`` is a condition key of ``s3:ListBucket`` only (Service
    Authorization Reference, Amazon S3); a request for ``GetBucketLocation`` carries no such key,
    so a prefix condition on it would never match and the call would be denied.
    """
    cond = None
    if prefixes and "" not in prefixes:
        cond = {"StringLike": {"s3:prefix": [f"{p}*" for p in prefixes]}}
    return [
        statement(["s3:ListBucket"], [bucket_arn], sid=sid, conditions=cond),
        statement(["s3:GetBucketLocation"], [bucket_arn], sid=f"{sid}Location"),
    ]


def mlflow(
    tracking_server_arn: pulumi.Input[str], *, write: bool, sid: str, log_models: bool = False
) -> list[dict[str, Any]]:
    """The MLflow REST calls of a job on the stack's tracking server, scoped to the server ARN:
    :data:`MLFLOW_READ`, plus :data:`MLFLOW_WRITE` when ``write``, plus :data:`MLFLOW_FINALIZE`
    when the job logs models (``log_models``)."""
    actions = [*MLFLOW_READ, *(MLFLOW_WRITE if write else ())]
    found = [statement([f"sagemaker-mlflow:{a}" for a in actions], [tracking_server_arn], sid=sid)]
    if log_models:
        found.append(
            statement(
                [f"sagemaker-mlflow:{MLFLOW_FINALIZE}"],
                [tracking_server_arn],
                sid=f"{sid}Finalize",
            )
        )
    return found


def kms_use(key_arn: pulumi.Input[str], *, sid: str = "UseStackKey") -> dict[str, Any]:
    return statement(KMS_USE, [key_arn], sid=sid)


def metrics(namespaces: Sequence[str], *, sid: str = "PutMetrics") -> dict[str, Any]:
    return any_resource(
        ["cloudwatch:PutMetricData"],
        sid=sid,
        conditions={"StringEquals": {"cloudwatch:namespace": list(namespaces)}},
    )


def log_group_arn(region: str, account_id: pulumi.Input[str], name_prefix: str):
    """ARN pattern of the log groups (and their streams) whose names start with ``name_prefix``."""
    return pulumi.Output.concat(
        "arn:aws:logs:", region, ":", account_id, ":log-group:", name_prefix, "*"
    )


def write_logs(region: str, account_id: pulumi.Input[str], *name_prefixes: str) -> dict:
    """Write to the log groups starting with the given prefixes (create them if needed)."""
    return statement(
        ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
        [log_group_arn(region, account_id, p) for p in name_prefixes],
        sid="WriteOwnLogs",
    )


def ecr_pull(image_uris: Sequence[str]) -> list[dict[str, Any]]:
    """Pull the given images: the auth token (account-wide) and the named repositories."""
    repos = sorted({_repository_arn(uri) for uri in image_uris})
    return [
        any_resource(["ecr:GetAuthorizationToken"], sid="EcrToken"),
        statement(
            ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            repos,
            sid="PullImages",
        ),
    ]


def _repository_arn(image_uri: str) -> str:
    """``<acct>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag>`` → the repository ARN."""
    host, _, path = image_uri.partition("/")
    parts = host.split(".")
    if len(parts) < 6 or parts[1:3] != ["dkr", "ecr"] or not path:
        raise ValueError(f"{image_uri!r} is not an ECR image URI (<acct>.dkr.ecr.<region>…/repo)")
    repo = path.split("@")[0].split(":")[0]
    return f"arn:aws:ecr:{parts[3]}:{parts[0]}:repository/{repo}"


def kms_key_policy(region: str, account_id: pulumi.Input[str]) -> pulumi.Output[str]:
    """Key policy: the account administers the key through IAM (explicit actions, no ``kms:*``);
    CloudWatch alarms and EventBridge may use it to publish to the encrypted SNS topic."""
    root = pulumi.Output.concat("arn:aws:iam::", account_id, ":root")
    return document(
        [
            {
                "Sid": "AccountAdministersThroughIam",
                "Effect": "Allow",
                "Principal": {"AWS": root},
                "Action": KMS_ADMIN,
                "Resource": "*",
            },
            {
                "Sid": "AlarmsPublishToEncryptedTopic",
                "Effect": "Allow",
                "Principal": {"Service": ["cloudwatch.amazonaws.com", "events.amazonaws.com"]},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": "*",
                "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
            },
            {
                "Sid": "CloudWatchLogsEncrypt",
                "Effect": "Allow",
                "Principal": {"Service": f"logs.{region}.amazonaws.com"},
                # no kms:DescribeKey: its requests carry no encryption context, so under this
                # condition it could never be allowed (parliament: UNKNOWN_CONDITION_FOR_ACTION)
                "Action": [
                    "kms:Decrypt",
                    "kms:Encrypt",
                    "kms:GenerateDataKey",
                    "kms:GenerateDataKeyWithoutPlaintext",
                    "kms:ReEncryptFrom",
                    "kms:ReEncryptTo",
                ],
                "Resource": "*",
                "Condition": {
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": [
                            log_group_arn(region, account_id, prefix)
                            for prefix in ENCRYPTED_LOG_GROUP_PREFIXES
                        ]
                    }
                },
            },
        ]
    )


def sfn_log_delivery() -> dict[str, Any]:
    """What Step Functions needs to deliver execution logs to CloudWatch Logs (no ARNs exist)."""
    return any_resource(
        [
            "logs:CreateLogDelivery",
            "logs:DeleteLogDelivery",
            "logs:DescribeLogGroups",
            "logs:DescribeResourcePolicies",
            "logs:GetLogDelivery",
            "logs:ListLogDeliveries",
            "logs:PutResourcePolicy",
            "logs:UpdateLogDelivery",
        ],
        sid="DeliverExecutionLogs",
    )
