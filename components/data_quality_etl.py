"""DataQualityEtl: the Glue 5.0 job that validates and prepares every batch (DESIGN §3, §8).

The job runs ``jobs/aws/glue_ingest.py`` (uploaded by Pulumi as an S3 object) with the ``jobs`` and
``validation`` packages (a zip uploaded by Pulumi, passed with ``--extra-py-files``). Its arguments
name the lake (data bucket), the reports bucket, the stack and the tracking server; the lake,
reports and stack are *non-overridable*, so a run can only choose the batch (``--source``) and its
run id (``--run_id``). The role reads/writes only the lake prefixes and the reports bucket, and
reads only the code prefix of the artifacts bucket.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components import policies

CODE_PREFIX = "code/glue/"
LAKE_WRITE_PREFIXES = ("raw/", "quarantine/", "curated/", "runs/")
LAKE_READ_PREFIXES = ("raw/", "curated/", "runs/")
#: Installed by Glue at job start (Glue 5.0 ships pandas/numpy/boto3, not these).
ADDITIONAL_MODULES = "great_expectations~=1.5,pydantic~=2.7,pydantic-settings~=2.3"


@dataclass(frozen=True)
class DataQualityEtlArgs:
    stack: str
    region: str
    account_id: pulumi.Input[str]
    data_bucket: pulumi.Input[str]
    data_bucket_arn: pulumi.Input[str]
    reports_bucket: pulumi.Input[str]
    reports_bucket_arn: pulumi.Input[str]
    artifacts_bucket: pulumi.Input[str]
    artifacts_bucket_arn: pulumi.Input[str]
    key_arn: pulumi.Input[str]
    tracking_server_arn: pulumi.Input[str]
    script: pulumi.Asset
    libraries: pulumi.Archive
    worker_type: str = "G.1X"
    number_of_workers: int = 2
    timeout_minutes: int = 30
    max_concurrent_runs: int = 3
    tags: Mapping[str, str] = field(default_factory=dict)


class DataQualityEtl(pulumi.ComponentResource):
    role: aws.iam.Role
    job: aws.glue.Job
    job_name: pulumi.Output[str]
    job_arn: pulumi.Output[str]
    script_uri: pulumi.Output[str]
    libraries_uri: pulumi.Output[str]

    def __init__(
        self, name: str, args: DataQualityEtlArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("abalone:index:DataQualityEtl", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)

        script = aws.s3.BucketObjectv2(
            f"{name}-script",
            bucket=args.artifacts_bucket,
            key=f"{CODE_PREFIX}glue_ingest.py",
            source=args.script,
            content_type="text/x-python",
            server_side_encryption="aws:kms",
            kms_key_id=args.key_arn,
            tags=tags,
            opts=child,
        )
        libraries = aws.s3.BucketObjectv2(
            f"{name}-libraries",
            bucket=args.artifacts_bucket,
            key=f"{CODE_PREFIX}abalone-libs.zip",
            source=args.libraries,
            content_type="application/zip",
            server_side_encryption="aws:kms",
            kms_key_id=args.key_arn,
            tags=tags,
            opts=child,
        )
        self.script_uri = pulumi.Output.concat("s3://", script.bucket, "/", script.key)
        self.libraries_uri = pulumi.Output.concat("s3://", libraries.bucket, "/", libraries.key)

        self.role = policies.service_role(
            name,
            service="glue",
            description=f"{name}: validate + prepare batches",
            statements=[
                policies.objects(
                    ["s3:GetObject"], args.data_bucket_arn, *LAKE_READ_PREFIXES, sid="ReadLake"
                ),
                policies.objects(
                    ["s3:PutObject"], args.data_bucket_arn, *LAKE_WRITE_PREFIXES, sid="WriteLake"
                ),
                *policies.list_bucket(args.data_bucket_arn, "", sid="ListLake"),
                policies.objects(
                    ["s3:GetObject", "s3:PutObject"],
                    args.reports_bucket_arn,
                    "",
                    sid="WriteReports",
                ),
                *policies.list_bucket(args.reports_bucket_arn, "", sid="ListReports"),
                policies.objects(
                    ["s3:GetObject"], args.artifacts_bucket_arn, CODE_PREFIX, sid="ReadCode"
                ),
                policies.kms_use(args.key_arn),
                policies.write_logs(args.region, args.account_id, "/aws-glue/"),
                policies.metrics(["Glue"]),
            ],
            tags=tags,
            opts=child,
        ).role
        self.job = aws.glue.Job(
            f"{name}-job",
            name=name,
            description="Validate (Great Expectations) and prepare one abalone batch",
            role_arn=self.role.arn,
            glue_version="5.0",
            command=aws.glue.JobCommandArgs(
                name="glueetl", script_location=self.script_uri, python_version="3"
            ),
            worker_type=args.worker_type,
            number_of_workers=args.number_of_workers,
            timeout=args.timeout_minutes,
            max_retries=0,
            execution_property=aws.glue.JobExecutionPropertyArgs(
                max_concurrent_runs=args.max_concurrent_runs
            ),
            default_arguments={
                "--job-language": "python",
                "--extra-py-files": self.libraries_uri,
                "--additional-python-modules": ADDITIONAL_MODULES,
                "--tracking_server_arn": args.tracking_server_arn,
                "--enable-metrics": "true",
                "--enable-continuous-cloudwatch-log": "true",
                "--enable-observability-metrics": "true",
            },
            non_overridable_arguments={
                "--lake": pulumi.Output.concat("s3://", args.data_bucket),
                "--reports": pulumi.Output.concat("s3://", args.reports_bucket),
                "--env": args.stack,
            },
            tags=tags,
            opts=child,
        )
        self.job_name = self.job.name
        self.job_arn = self.job.arn
        self.register_outputs(
            {
                "job_name": self.job_name,
                "role_arn": self.role.arn,
                "script_uri": self.script_uri,
                "libraries_uri": self.libraries_uri,
            }
        )
