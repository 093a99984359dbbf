"""DataLake: the data, artifacts and reports buckets and the stack's KMS key (DESIGN §8).

Every bucket: versioning on, SSE-KMS with the stack's customer managed key (rotation on), S3 bucket
keys, all four public access block flags, ACLs disabled (bucket owner enforced), a TLS-only bucket
policy, and a lifecycle rule expiring noncurrent versions. The data bucket sends its events to
EventBridge (the pipeline trigger on ``raw/``).

Layout: data = the lake (``raw/``, ``quarantine/``, ``curated/``, ``runs/``) plus endpoint data
capture (``capture/``); artifacts = MLflow artifacts (``mlflow/``), code (``code/``), training
output (``training/``), CI/CD artifacts (``delivery/``); reports = Data Docs + summaries per ingest
and drift reports (``monitoring/``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components import policies

BUCKETS = ("data", "artifacts", "reports")


@dataclass(frozen=True)
class DataLakeArgs:
    region: str
    account_id: pulumi.Input[str]
    tags: Mapping[str, str] = field(default_factory=dict)
    noncurrent_version_days: int = 90
    kms_deletion_window_days: int = 30
    #: Only for throw-away stacks: lets ``pulumi destroy`` delete non-empty buckets.
    force_destroy: bool = False


class DataLake(pulumi.ComponentResource):
    key: aws.kms.Key
    key_arn: pulumi.Output[str]
    buckets: dict[str, aws.s3.Bucket]
    data_bucket: pulumi.Output[str]
    artifacts_bucket: pulumi.Output[str]
    reports_bucket: pulumi.Output[str]
    data_bucket_arn: pulumi.Output[str]
    artifacts_bucket_arn: pulumi.Output[str]
    reports_bucket_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: DataLakeArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("abalone:index:DataLake", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)

        self.key = aws.kms.Key(
            f"{name}-key",
            description=f"{name}: buckets, data capture, logs and notifications",
            enable_key_rotation=True,
            deletion_window_in_days=args.kms_deletion_window_days,
            policy=policies.kms_key_policy(args.region, args.account_id),
            tags=tags,
            opts=child,
        )
        aws.kms.Alias(
            f"{name}-key-alias",
            name=f"alias/{name}",
            target_key_id=self.key.key_id,
            opts=child,
        )
        self.key_arn = self.key.arn

        self.buckets = {}
        for kind in BUCKETS:
            self.buckets[kind] = self._bucket(
                f"{name}-{kind}", kind, args, tags, eventbridge=kind == "data"
            )
        self.data_bucket = self.buckets["data"].bucket
        self.artifacts_bucket = self.buckets["artifacts"].bucket
        self.reports_bucket = self.buckets["reports"].bucket
        self.data_bucket_arn = self.buckets["data"].arn
        self.artifacts_bucket_arn = self.buckets["artifacts"].arn
        self.reports_bucket_arn = self.buckets["reports"].arn

        self.register_outputs(
            {
                "key_arn": self.key_arn,
                "data_bucket": self.data_bucket,
                "artifacts_bucket": self.artifacts_bucket,
                "reports_bucket": self.reports_bucket,
            }
        )

    def _bucket(
        self,
        rname: str,
        kind: str,
        args: DataLakeArgs,
        tags: dict[str, str],
        *,
        eventbridge: bool,
    ) -> aws.s3.Bucket:
        child = pulumi.ResourceOptions(parent=self)
        bucket = aws.s3.Bucket(
            rname,
            force_destroy=args.force_destroy,
            tags={**tags, "purpose": kind},
            opts=child,
        )
        aws.s3.BucketOwnershipControls(
            f"{rname}-ownership",
            bucket=bucket.id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=child,
        )
        aws.s3.BucketVersioning(
            f"{rname}-versioning",
            bucket=bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(
                status="Enabled"
            ),
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{rname}-encryption",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="aws:kms", kms_master_key_id=self.key.arn
                    ),
                    bucket_key_enabled=True,
                )
            ],
            opts=child,
        )
        block = aws.s3.BucketPublicAccessBlock(
            f"{rname}-public-access-block",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketPolicy(
            f"{rname}-policy",
            bucket=bucket.id,
            policy=policies.document(
                [
                    policies.statement(
                        ["s3:*"],
                        [bucket.arn, pulumi.Output.concat(bucket.arn, "/*")],
                        sid="DenyInsecureTransport",
                        effect="Deny",
                        conditions={"Bool": {"aws:SecureTransport": "false"}},
                    )
                    | {"Principal": "*"}
                ]
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[block]),
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{rname}-lifecycle",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="expire-noncurrent-versions",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                        noncurrent_days=args.noncurrent_version_days
                    ),
                    abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                        days_after_initiation=7
                    ),
                )
            ],
            opts=child,
        )
        if eventbridge:
            aws.s3.BucketNotification(
                f"{rname}-events", bucket=bucket.id, eventbridge=True, opts=child
            )
        return bucket
