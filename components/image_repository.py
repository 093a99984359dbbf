"""The stack's private ECR repository for the Lambda container image, and the image itself.

``pulumi up`` builds ``components/lambda_image/Dockerfile`` (``pulumi-docker-build``, BuildKit,
``linux/amd64``) and pushes it to the stack's repository with ECR credentials the program asks
for itself (``aws.ecr.get_authorization_token`` for the repository's registry); the Lambda
functions then run ``<repository>@<pushed digest>``, so a function changes exactly when the image
does. The tag is content-addressed (:func:`components.packaging.lambda_image_tag`: the Dockerfile,
its ignore file, ``jobs/``, ``validation/``, the requirements and the model-runtime pins), so an
unchanged tree neither rebuilds nor pushes.

- private, tags immutable (a content-addressed tag never needs to move), scan on push;
- encrypted at rest with AES-256 (ECR-managed keys) rather than the stack CMK: the image holds code
  and public packages only, no data;
- a lifecycle policy expires untagged images after 7 days and keeps the 20 newest images;
- a repository policy that lets the Lambda service pull the image for this stack's functions only
  (``aws:sourceArn``). Lambda needs exactly ``ecr:BatchGetImage`` and ``ecr:GetDownloadUrlForLayer``
  on the repository; the functions' execution roles need no ECR permission (Lambda pulls the image
  itself when the function is created or updated, not with the execution role).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_docker_build as docker_build

from components import policies
from components.packaging import (
    LAMBDA_DOCKERFILE,
    REPO_ROOT,
    lambda_build_args,
    lambda_image_tag,
)

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


@dataclass(frozen=True)
class LambdaImage:
    repository: aws.ecr.Repository
    image: docker_build.Image
    #: ``<repository url>@sha256:<digest>``: what the functions run
    uri: pulumi.Output[str]


def lambda_image(parent: pulumi.Resource, name: str, args: ImageRepositoryArgs) -> LambdaImage:
    """The repository (``name``), its policies and the image built and pushed into it
    (``f"{name}-build"``), children of ``parent``."""
    repo = image_repository(parent, name, args)
    token = aws.ecr.get_authorization_token_output(registry_id=repo.registry_id)
    # paths relative to the working directory (the project directory under `pulumi up`): an
    # absolute path would differ between clones (a laptop, CodeBuild) and make the provider
    # rebuild an unchanged image, whose push to an immutable tag it already holds would fail
    context = Path(os.path.relpath(REPO_ROOT))
    image = docker_build.Image(
        f"{name}-build",
        context=docker_build.BuildContextArgs(location=context.as_posix()),
        dockerfile=docker_build.DockerfileArgs(location=(context / LAMBDA_DOCKERFILE).as_posix()),
        platforms=[docker_build.Platform.LINUX_AMD64],
        build_args=lambda_build_args(),
        tags=[pulumi.Output.concat(repo.repository_url, ":", lambda_image_tag())],
        push=True,
        registries=[
            docker_build.RegistryArgs(
                address=repo.repository_url, username=token.user_name, password=token.password
            )
        ],
        opts=pulumi.ResourceOptions(parent=parent),
    )
    uri = pulumi.Output.concat(repo.repository_url, "@", image.digest)
    return LambdaImage(repository=repo, image=image, uri=uri)


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
