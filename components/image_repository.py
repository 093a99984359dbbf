"""The stack's private ECR repository for the Lambda container image.

The image is built from ``components/lambda_image/Dockerfile`` and pushed by a person or CI (see
README, "Deploy to AWS"); the stack config ``lambdaImageUri`` then points the Lambda functions at it
(:mod:`components.lambda_function`). The repository is created in every stack, so the image can be
pushed before the functions are switched to it.

- private, tags immutable (every push needs a new tag, e.g. the git commit), scan on push;
- encrypted at rest with AES-256 (ECR-managed keys) rather than the stack CMK, so the repository
  depends on nothing else in the stack and can be created alone with a targeted ``pulumi up``
  before the first image exists (the image holds code and public packages only, no data);
- a lifecycle policy expires untagged images after 7 days and keeps the 20 newest images;
- a repository policy that lets the Lambda service pull the image for this stack's functions only
  (``aws:sourceArn``). Lambda needs exactly ``ecr:BatchGetImage`` and ``ecr:GetDownloadUrlForLayer``
  on the repository; the functions' execution roles need no ECR permission (Lambda pulls the image
  itself when the function is created or updated, not with the execution role). Declaring the
  policy here means the deployer does not need ``ecr:SetRepositoryPolicy`` for Lambda to add it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components import policies

#: Lambda's pull actions (the AWS Lambda developer guide, "Amazon ECR permissions").
LAMBDA_PULL_ACTIONS = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
KEEP_IMAGES = 20
UNTAGGED_DAYS = 7


def repository_name(stack: str) -> str:
    """Physical name of the stack's Lambda image repository (also in README's push commands)."""
    return f"abalone-{stack}-lambda"


def lifecycle_policy() -> str:
    return json.dumps(
        {
            "rules": [
                {
                    "rulePriority": 1,
                    "description": f"expire untagged images after {UNTAGGED_DAYS} days",
                    "selection": {
                        "tagStatus": "untagged",
                        "countType": "sinceImagePushed",
                        "countUnit": "days",
                        "countNumber": UNTAGGED_DAYS,
                    },
                    "action": {"type": "expire"},
                },
                {
                    "rulePriority": 2,
                    "description": f"keep the {KEEP_IMAGES} newest images",
                    "selection": {
                        "tagStatus": "any",
                        "countType": "imageCountMoreThan",
                        "countNumber": KEEP_IMAGES,
                    },
                    "action": {"type": "expire"},
                },
            ]
        }
    )


@dataclass(frozen=True)
class ImageRepositoryArgs:
    stack: str
    region: str
    account_id: pulumi.Input[str]
    force_delete: bool
    tags: Mapping[str, str]


def image_repository(
    parent: pulumi.Resource, name: str, args: ImageRepositoryArgs
) -> aws.ecr.Repository:
    """The repository (``name``) and its lifecycle and repository policies, children of
    ``parent``."""
    child = pulumi.ResourceOptions(parent=parent)
    repo = aws.ecr.Repository(
        name,
        name=repository_name(args.stack),
        image_tag_mutability="IMMUTABLE",
        image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(
            scan_on_push=True
        ),
        encryption_configurations=[
            aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="AES256")
        ],
        force_delete=args.force_delete,
        tags=dict(args.tags),
        opts=child,
    )
    aws.ecr.LifecyclePolicy(
        f"{name}-lifecycle", repository=repo.name, policy=lifecycle_policy(), opts=child
    )
    functions = pulumi.Output.concat(
        "arn:aws:lambda:", args.region, ":", args.account_id, f":function:abalone-{args.stack}-*"
    )
    aws.ecr.RepositoryPolicy(
        f"{name}-policy",
        repository=repo.name,
        policy=policies.document(
            [
                {
                    "Sid": "LambdaPullsForThisStack",
                    "Effect": "Allow",
                    "Principal": {"Service": policies.SERVICE["lambda"]},
                    "Action": LAMBDA_PULL_ACTIONS,
                    "Condition": {"StringLike": {"aws:sourceArn": functions}},
                }
            ]
        ),
        opts=child,
    )
    return repo
