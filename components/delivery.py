"""Delivery: CI/CD for the whole project — CodePipeline V2 + CodeBuild (DESIGN §8).

Source (CodeConnections, e.g. GitHub, or CodeCommit — by config) → Test (the README's test command)
→ Deploy dev (``pulumi preview`` + ``pulumi up`` of stack ``dev``) → manual approval → Deploy prd.
CodeBuild does not hold deployment rights itself: the deploy project assumes ``deployRoleArn`` (a
role an account administrator creates once, outside this program), so the CI roles stay minimal.
The deploy project runs in privileged mode, because ``pulumi up`` builds the Lambda container
image with the Docker daemon of the build container (CodeBuild starts it only in privileged mode);
the test project does not.
The Pulumi state backend is ``pulumiBackendUrl``; a Pulumi Cloud token, if used, is read from the
SSM SecureString named by ``pulumiAccessTokenParameter`` (never stored in config).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from textwrap import dedent

import pulumi
import pulumi_aws as aws

from components import policies
from components.config import CONNECTION_ARN

BUILD_IMAGE = "aws/codebuild/standard:7.0"

TEST_BUILDSPEC = dedent(
    """\
    version: 0.2
    phases:
      install:
        runtime-versions:
          python: "3.11"
      build:
        commands:
          - bash .ci/run
    """
)

DEPLOY_BUILDSPEC = dedent(
    """\
    version: 0.2
    env:
      shell: bash
    phases:
      install:
        runtime-versions:
          python: "3.11"
        commands:
          - curl -fsSL https://get.pulumi.com | sh
          - export PATH="$HOME/.pulumi/bin:$PATH"
          - python -m venv .venv && . .venv/bin/activate && pip install -e .
      build:
        commands:
          - export PATH="$HOME/.pulumi/bin:$PATH" && . .venv/bin/activate
          - >-
            creds=$(aws sts assume-role --role-arn "$DEPLOY_ROLE_ARN"
            --role-session-name "abalone-$STACK" --query Credentials --output json)
          - export AWS_ACCESS_KEY_ID=$(echo "$creds" | python -c 'import json,sys; print(json.load(sys.stdin)["AccessKeyId"])')
          - export AWS_SECRET_ACCESS_KEY=$(echo "$creds" | python -c 'import json,sys; print(json.load(sys.stdin)["SecretAccessKey"])')
          - export AWS_SESSION_TOKEN=$(echo "$creds" | python -c 'import json,sys; print(json.load(sys.stdin)["SessionToken"])')
          - if [ -n "$PULUMI_BACKEND_URL" ]; then pulumi login "$PULUMI_BACKEND_URL"; fi
          - pulumi stack select "$STACK"
          # pulumi up is the whole deploy: it builds and pushes the Lambda image (Docker in this
          # privileged build container) and trains the seed model (no build/ cache here)
          - pulumi preview --diff --non-interactive
          - pulumi up --yes --skip-preview --non-interactive
    """
)


def connection_service(connection_arn: str) -> str:
    """The IAM service prefix that authorises ``UseConnection`` on ``connection_arn``.

    Both prefixes exist, but a policy's action prefix must match the resource's (Developer Tools
    console guide, "Connections rename"): ``codestar-connections:UseConnection`` is never evaluated
    for a ``codeconnections`` ARN, and the other way round.
    """
    match = CONNECTION_ARN.match(connection_arn)
    if not match:
        raise ValueError(f"{connection_arn!r} is not a CodeConnections connection ARN")
    return match.group(1)


@dataclass(frozen=True)
class DeliveryArgs:
    region: str
    account_id: pulumi.Input[str]
    key_arn: pulumi.Input[str]
    artifacts_bucket: pulumi.Input[str]
    artifacts_bucket_arn: pulumi.Input[str]
    topic_arn: pulumi.Input[str]
    source_provider: str
    repository: str
    branch: str
    deploy_role_arn: str
    connection_arn: str = ""
    pulumi_backend_url: str = ""
    pulumi_access_token_parameter: str = ""
    stacks: tuple[str, ...] = ("dev", "prd")
    log_retention_days: int = 90
    tags: Mapping[str, str] = field(default_factory=dict)


class Delivery(pulumi.ComponentResource):
    pipeline: aws.codepipeline.Pipeline
    pipeline_name: pulumi.Output[str]
    projects: dict[str, aws.codebuild.Project]

    def __init__(
        self, name: str, args: DeliveryArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("abalone:index:Delivery", name, None, opts)
        if args.source_provider not in ("CodeConnections", "CodeCommit"):
            raise ValueError(f"source_provider {args.source_provider!r} is not supported")
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)
        # CodePipeline keeps artifacts under the first 20 characters of the pipeline name.
        artifact_prefix = f"{name[:20]}/"
        artifact_objects = policies.bucket_objects(args.artifacts_bucket_arn, artifact_prefix)

        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=f"/abalone/{name}/codebuild",
            retention_in_days=args.log_retention_days,
            kms_key_id=args.key_arn,
            tags=tags,
            opts=child,
        )
        build_statements = [
            policies.statement(
                ["logs:CreateLogStream", "logs:PutLogEvents"],
                [pulumi.Output.concat(log_group.arn, ":*")],
                sid="WriteBuildLogs",
            ),
            policies.statement(
                ["s3:GetObject", "s3:PutObject"], artifact_objects, sid="PipelineArtifacts"
            ),
            policies.kms_use(args.key_arn),
            policies.statement(["sts:AssumeRole"], [args.deploy_role_arn], sid="AssumeDeployer"),
        ]
        if args.pulumi_access_token_parameter:
            build_statements.append(
                policies.statement(
                    ["ssm:GetParameters"],
                    [
                        pulumi.Output.concat(
                            f"arn:aws:ssm:{args.region}:",
                            args.account_id,
                            ":parameter/",
                            args.pulumi_access_token_parameter.lstrip("/"),
                        )
                    ],
                    sid="ReadPulumiToken",
                )
            )
        build_role, build_policy = policies.service_role(
            f"{name}-build",
            service="codebuild",
            description=f"{name}: CodeBuild test and deploy projects",
            statements=build_statements,
            tags=tags,
            opts=child,
        )
        env_vars = [
            aws.codebuild.ProjectEnvironmentEnvironmentVariableArgs(
                name="DEPLOY_ROLE_ARN", value=args.deploy_role_arn
            ),
            aws.codebuild.ProjectEnvironmentEnvironmentVariableArgs(
                name="PULUMI_BACKEND_URL", value=args.pulumi_backend_url
            ),
        ]
        if args.pulumi_access_token_parameter:
            env_vars.append(
                aws.codebuild.ProjectEnvironmentEnvironmentVariableArgs(
                    name="PULUMI_ACCESS_TOKEN",
                    value=args.pulumi_access_token_parameter,
                    type="PARAMETER_STORE",
                )
            )
        self.projects = {}
        for kind, buildspec, variables, privileged in (
            ("test", TEST_BUILDSPEC, [], False),
            ("deploy", DEPLOY_BUILDSPEC, env_vars, True),
        ):
            self.projects[kind] = aws.codebuild.Project(
                f"{name}-{kind}",
                description=f"abalone-mlops {kind}",
                service_role=build_role.arn,
                encryption_key=args.key_arn,
                build_timeout=60,
                artifacts=aws.codebuild.ProjectArtifactsArgs(type="CODEPIPELINE"),
                source=aws.codebuild.ProjectSourceArgs(type="CODEPIPELINE", buildspec=buildspec),
                environment=aws.codebuild.ProjectEnvironmentArgs(
                    compute_type="BUILD_GENERAL1_MEDIUM",
                    image=BUILD_IMAGE,
                    type="LINUX_CONTAINER",
                    image_pull_credentials_type="CODEBUILD",
                    privileged_mode=privileged,
                    environment_variables=variables,
                ),
                logs_config=aws.codebuild.ProjectLogsConfigArgs(
                    cloudwatch_logs=aws.codebuild.ProjectLogsConfigCloudwatchLogsArgs(
                        group_name=log_group.name, status="ENABLED"
                    )
                ),
                tags=tags,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[build_policy]),
            )

        pipeline_statements = [
            policies.statement(
                ["s3:GetObject", "s3:PutObject"], artifact_objects, sid="PipelineArtifacts"
            ),
            *policies.list_bucket(args.artifacts_bucket_arn, artifact_prefix, sid="ListArtifacts"),
            policies.kms_use(args.key_arn),
            policies.statement(
                ["codebuild:BatchGetBuilds", "codebuild:StartBuild"],
                [project.arn for project in self.projects.values()],
                sid="RunBuilds",
            ),
            policies.statement(["sns:Publish"], [args.topic_arn], sid="ApprovalNotice"),
        ]
        if args.source_provider == "CodeConnections":
            pipeline_statements.append(
                policies.statement(
                    [f"{connection_service(args.connection_arn)}:UseConnection"],
                    [args.connection_arn],
                    sid="UseConnection",
                )
            )
            source_provider = "CodeStarSourceConnection"
            source_configuration = {
                "ConnectionArn": args.connection_arn,
                "FullRepositoryId": args.repository,
                "BranchName": args.branch,
                "OutputArtifactFormat": "CODE_ZIP",
            }
        else:
            pipeline_statements.append(
                policies.statement(
                    [
                        "codecommit:CancelUploadArchive",
                        "codecommit:GetBranch",
                        "codecommit:GetCommit",
                        "codecommit:GetUploadArchiveStatus",
                        "codecommit:UploadArchive",
                    ],
                    [
                        pulumi.Output.concat(
                            f"arn:aws:codecommit:{args.region}:",
                            args.account_id,
                            f":{args.repository}",
                        )
                    ],
                    sid="ReadRepository",
                )
            )
            source_provider = "CodeCommit"
            source_configuration = {
                "RepositoryName": args.repository,
                "BranchName": args.branch,
                "PollForSourceChanges": "false",
            }
        source_action = aws.codepipeline.PipelineStageActionArgs(
            name="Source",
            category="Source",
            owner="AWS",
            provider=source_provider,
            version="1",
            output_artifacts=["source"],
            configuration=source_configuration,
        )
        pipeline_role, pipeline_policy = policies.service_role(
            f"{name}-pipeline",
            service="codepipeline",
            description=f"{name}: CodePipeline",
            statements=pipeline_statements,
            tags=tags,
            opts=child,
        )

        def build(action: str, project: str, stack: str | None = None):
            configuration: dict[str, pulumi.Input[str]] = {
                "ProjectName": self.projects[project].name
            }
            if stack:
                configuration["EnvironmentVariables"] = (
                    f'[{{"name":"STACK","value":"{stack}","type":"PLAINTEXT"}}]'
                )
            return aws.codepipeline.PipelineStageActionArgs(
                name=action,
                category="Build",
                owner="AWS",
                provider="CodeBuild",
                version="1",
                input_artifacts=["source"],
                configuration=configuration,
            )

        stages = [
            aws.codepipeline.PipelineStageArgs(name="Source", actions=[source_action]),
            aws.codepipeline.PipelineStageArgs(name="Test", actions=[build("Test", "test")]),
        ]
        first, *rest = args.stacks
        stages.append(
            aws.codepipeline.PipelineStageArgs(
                name=f"Deploy-{first}", actions=[build(f"Deploy-{first}", "deploy", first)]
            )
        )
        for stack in rest:
            stages.append(
                aws.codepipeline.PipelineStageArgs(
                    name=f"Approve-{stack}",
                    actions=[
                        aws.codepipeline.PipelineStageActionArgs(
                            name=f"Approve-{stack}",
                            category="Approval",
                            owner="AWS",
                            provider="Manual",
                            version="1",
                            configuration={
                                "NotificationArn": args.topic_arn,
                                "CustomData": f"Deploy abalone-mlops to {stack}?",
                            },
                        )
                    ],
                )
            )
            stages.append(
                aws.codepipeline.PipelineStageArgs(
                    name=f"Deploy-{stack}", actions=[build(f"Deploy-{stack}", "deploy", stack)]
                )
            )
        self.pipeline = aws.codepipeline.Pipeline(
            f"{name}-pipeline",
            name=name,
            pipeline_type="V2",
            execution_mode="QUEUED",
            role_arn=pipeline_role.arn,
            artifact_stores=[
                aws.codepipeline.PipelineArtifactStoreArgs(
                    location=args.artifacts_bucket,
                    type="S3",
                    encryption_key=aws.codepipeline.PipelineArtifactStoreEncryptionKeyArgs(
                        id=args.key_arn, type="KMS"
                    ),
                )
            ],
            stages=stages,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[pipeline_policy]),
        )
        self.pipeline_name = self.pipeline.name
        self.register_outputs({"pipeline_name": self.pipeline_name})
