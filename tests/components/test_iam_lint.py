"""Every IAM policy document the program declares, linted with parliament, for dev and prd.

The documents are found generically: any resource input that is a JSON policy (a ``Statement``
list) — role trust and inline policies, bucket, key, topic and repository policies alike — so a
new resource with a policy is linted without touching this file. A finding fails the test unless
``iam_allowlist.yaml`` names it (issue, resource, and the reason it is a false positive); an
allowlist entry that no longer matches anything fails too, so the list cannot go stale.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import parliament
import pytest
import yaml

from tests.components.harness import Program

ALLOWLIST = Path(__file__).with_name("iam_allowlist.yaml")


@dataclass(frozen=True)
class Document:
    resource: str  # logical name
    typ: str
    prop: str  # input property (camelCase)
    text: str


@dataclass(frozen=True)
class Finding:
    issue: str
    resource: str
    prop: str
    detail: str

    def __str__(self) -> str:
        return f"{self.issue} {self.resource}.{self.prop}: {self.detail}"


def _policies_in(value: Any, path: str):
    if isinstance(value, str) and '"Statement"' in value:
        try:
            doc = json.loads(value)
        except ValueError:
            return
        if isinstance(doc, dict) and "Statement" in doc:
            yield path, value
    elif isinstance(value, dict):
        for key, inner in value.items():
            yield from _policies_in(inner, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from _policies_in(inner, f"{path}[{i}]")


def policy_documents(program: Program) -> list[Document]:
    return [
        Document(r.name, r.typ, prop, text)
        for r in program.resources
        for prop, text in _policies_in(r.inputs, "")
    ]


def lint(doc: Document) -> list[Finding]:
    policy = parliament.analyze_policy_string(doc.text, include_community_auditors=True)
    return [
        Finding(f.issue, doc.resource, doc.prop, json.dumps(f.detail, sort_keys=True, default=str))
        for f in policy.findings
    ]


def load_allowlist() -> list[dict[str, str]]:
    entries = yaml.safe_load(ALLOWLIST.read_text()) or []
    for entry in entries:
        assert set(entry) >= {"finding", "resource", "reason"}, entry
        assert set(entry) <= {"finding", "resource", "property", "detail", "reason"}, entry
        assert len(entry["reason"].split()) >= 8, f"say why it is a false positive: {entry}"
    return entries


def allowed(finding: Finding, entry: dict[str, str]) -> bool:
    return (
        finding.issue == entry["finding"]
        and fnmatch.fnmatchcase(finding.resource, entry["resource"])
        and fnmatch.fnmatchcase(finding.prop, entry.get("property", "*"))
        and entry.get("detail", "") in finding.detail
    )


@pytest.fixture(scope="module")
def findings(programs) -> dict[str, list[Finding]]:
    return {
        stack: [f for doc in policy_documents(program) for f in lint(doc)]
        for stack, program in programs.items()
    }


def test_every_kind_of_policy_document_is_collected(program):
    kinds = {(d.typ.split(":")[-1], d.prop) for d in policy_documents(program)}
    assert {
        ("Role", "assumeRolePolicy"),
        ("RolePolicy", "policy"),
        ("BucketPolicy", "policy"),
        ("Key", "policy"),
        ("TopicPolicy", "policy"),
        ("RepositoryPolicy", "policy"),
    } <= kinds, kinds


def test_parliament_finds_nothing_outside_the_allowlist(findings):
    entries = load_allowlist()
    unexpected = [
        f"{stack}: {f}"
        for stack, found in findings.items()
        for f in found
        if not any(allowed(f, e) for e in entries)
    ]
    assert unexpected == []


def test_every_allowlist_entry_still_matches_a_finding(findings):
    everything = [f for found in findings.values() for f in found]
    stale = [e for e in load_allowlist() if not any(allowed(f, e) for f in everything)]
    assert stale == []


def test_the_linter_reports_what_the_issue_found():
    """The three real findings of issue 13, as they were declared before the fix."""
    bad = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ListPrefix",
                "Effect": "Allow",
                "Action": ["s3:GetBucketLocation", "s3:ListBucket"],
                "Resource": ["arn:aws:s3:::b"],
                "Condition": {"StringLike": {"s3:prefix": ["runs/*"]}},
            },
            {
                "Sid": "Mlflow",
                "Effect": "Allow",
                "Action": ["sagemaker-mlflow:*"],
                "Resource": [
                    "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/abalone"
                ],
            },
            {
                "Sid": "Connection",
                "Effect": "Allow",
                "Action": ["codestar-connections:UseConnection"],
                "Resource": ["arn:aws:codeconnections:us-east-1:123456789012:connection/x"],
            },
        ],
    }
    found = lint(Document("bad", "t", "policy", json.dumps(bad)))
    issues = {f.issue for f in found}
    assert "UNKNOWN_CONDITION_FOR_ACTION" in issues
    mismatches = " ".join(f.detail for f in found if f.issue == "RESOURCE_MISMATCH")
    assert "sagemaker-mlflow:AccessUI" in mismatches
    assert "codestar-connections:UseConnection" in mismatches


# ---- the three corrections, as behaviour of the declared policies --------------------------------
def test_get_bucket_location_is_allowed_on_every_bucket_a_role_may_list(program):
    from tests.components.test_lambda_runtime import allows, as_list, role_documents

    checked = 0
    for name, doc in role_documents(program).items():
        for stmt in doc["Statement"]:
            if "s3:ListBucket" not in as_list(stmt["Action"]):
                continue
            for bucket in as_list(stmt["Resource"]):
                # a GetBucketLocation request carries no s3:prefix: no condition may need one
                assert allows(doc, "s3:GetBucketLocation", bucket), f"{name}: {bucket}"
                checked += 1
            assert "s3:GetBucketLocation" not in as_list(stmt["Action"]) or not stmt.get(
                "Condition"
            ), name
    assert checked > 10


def test_no_role_is_granted_the_mlflow_ui_and_every_mlflow_grant_names_the_server(program):
    from tests.components.test_lambda_runtime import as_list, role_documents

    server = program.outputs["trackingServerArn"]
    granted = 0
    for name, doc in role_documents(program).items():
        for stmt in doc["Statement"]:
            actions = [a for a in as_list(stmt["Action"]) if a.startswith("sagemaker-mlflow:")]
            if not actions:
                continue
            assert not [a for a in actions if fnmatch.fnmatchcase("sagemaker-mlflow:AccessUI", a)]
            assert as_list(stmt["Resource"]) == [server], name
            granted += 1
    assert granted >= 6  # training, gate, system test, approval, promote, drift


def test_the_pipeline_uses_the_connection_with_the_prefix_of_its_arn(prd):
    from tests.components.test_lambda_runtime import as_list, role_documents

    doc = role_documents(prd)[f"{prd.config.prefix}-cicd-pipeline-role-policy"]
    (stmt,) = [s for s in doc["Statement"] if s.get("Sid") == "UseConnection"]
    service = prd.config.connection_arn.split(":")[2]
    assert as_list(stmt["Action"]) == [f"{service}:UseConnection"]
    assert as_list(stmt["Resource"]) == [prd.config.connection_arn]


@pytest.mark.parametrize(
    ("arn", "service"),
    [
        ("arn:aws:codeconnections:eu-west-1:111111111111:connection/ab-12", "codeconnections"),
        (
            "arn:aws:codestar-connections:us-east-1:111111111111:connection/ab-12",
            "codestar-connections",
        ),
    ],
)
def test_connection_service_follows_the_arn(arn, service):
    from components.delivery import connection_service

    assert connection_service(arn) == service


def test_a_connection_arn_of_another_service_is_a_config_error(prd):
    from components.config import ConfigError, load_stack_config

    base = prd.config.model_dump(by_alias=True, exclude={"stack", "region"})
    bad = "arn:aws:codecommit:us-east-1:111111111111:abalone"
    with pytest.raises(ConfigError, match="connectionArn"):
        load_stack_config("prd", prd.config.region, {**base, "connectionArn": bad})
