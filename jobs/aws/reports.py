"""What a person opens of a deployed stack: the managed MLflow UI (a presigned URL) and the
data-quality reports (presigned links, or a local copy of a whole report site that opens with no
network; the buckets stay private)."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from jobs.adapters.storage import get_tree, open_store
from jobs.aws import launcher
from jobs.aws.launcher import StackResources
from jobs.core.errors import ServiceError, UsageError

log = logging.getLogger(__name__)


def tracking_server_name(resources: StackResources) -> str:
    if resources.tracking_server_name:
        return resources.tracking_server_name
    arn = resources.tracking_server_arn
    if ":mlflow-tracking-server/" in arn:
        return arn.rsplit("/", 1)[-1]
    raise UsageError(
        f"stack {resources.stack!r}: tracking server {arn!r} is not a SageMaker MLflow ARN and no "
        "tracking-server-name parameter is set"
    )


def mlflow_ui_url(
    resources: StackResources,
    *,
    sagemaker: Any = None,
    expires_s: int = 300,
    session_s: int = 12 * 3600,
) -> str:
    """A presigned URL to the stack's MLflow UI (valid ``expires_s`` to open, ``session_s`` after)."""
    if not 5 <= expires_s <= 300:
        raise UsageError("the presigned MLflow URL must expire within 5..300 seconds")
    if not 1800 <= session_s <= 43200:
        raise UsageError("the MLflow UI session must last 1800..43200 seconds")
    sagemaker = sagemaker or launcher._client("sagemaker", resources.region)
    response = launcher._call(
        "creating a presigned MLflow UI URL",
        sagemaker.create_presigned_mlflow_tracking_server_url,
        TrackingServerName=tracking_server_name(resources),
        ExpiresInSeconds=expires_s,
        SessionExpirationDurationInSeconds=session_s,
    )
    return response["AuthorizedUrl"]


@dataclass(frozen=True)
class Report:
    ingest_id: str
    status: str | None
    rows_total: int | None
    dataset_version: str | None
    summary_url: str
    report_url: str | None
    problems: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def list_reports(
    resources: StackResources,
    *,
    s3: Any = None,
    limit: int = 20,
    expires_s: int = 3600,
) -> list[Report]:
    """The newest data-quality reports, with presigned links (the buckets stay private)."""
    if limit < 1:
        raise UsageError("--limit must be at least 1")
    if not 60 <= expires_s <= 7 * 24 * 3600:
        raise UsageError("presigned links must expire within 60 s .. 7 days")
    s3 = s3 or launcher._client("s3", resources.region)
    bucket = resources.reports_bucket
    summaries: list[str] = []
    docs: dict[str, str] = {}
    paginator = s3.get_paginator("list_objects_v2")
    try:
        for page in paginator.paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                parts = key.split("/")
                if len(parts) == 2 and parts[1] == "summary.json":
                    summaries.append(parts[0])
                elif len(parts) >= 3 and parts[1] == "data_docs" and parts[-1] == "index.html":
                    docs.setdefault(parts[0], key)
    except Exception as err:  # botocore errors from the paginator
        raise launcher._aws_error(f"listing s3://{bucket}", err) from err

    def presign(key: str) -> str:
        return launcher._call(
            f"presigning s3://{bucket}/{key}",
            s3.generate_presigned_url,
            ClientMethod="get_object",
            Params={"Bucket": bucket, "Key": key},
            ExpiresIn=expires_s,
        )

    reports = []
    for ingest_id in sorted(summaries, reverse=True)[:limit]:
        key = f"{ingest_id}/summary.json"
        try:
            body = launcher._call(
                f"reading s3://{bucket}/{key}", s3.get_object, Bucket=bucket, Key=key
            )
            summary = json.loads(body["Body"].read())
        except (ServiceError, ValueError) as err:
            log.warning("summary %s unreadable: %s", key, err)
            summary = {}
        reports.append(
            Report(
                ingest_id=ingest_id,
                status=summary.get("status"),
                rows_total=summary.get("rows_total"),
                dataset_version=summary.get("dataset_version"),
                problems=len(summary.get("problems") or []) if summary else None,
                summary_url=presign(key),
                report_url=presign(docs[ingest_id]) if ingest_id in docs else None,
            )
        )
    return reports


_INGEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def download_report(
    reports_uri: str, dest: Path, *, ingest_id: str | None = None, s3: Any = None
) -> Path:
    """Copy one ingest's report (its Data Docs site with the vendored assets, and the summary)
    from the reports store into ``dest/<ingest_id>/`` and return the local page to open.

    A presigned link covers one object, while a report page loads its styles, scripts and other
    pages by relative links; the local copy opens whole, with no network. ``ingest_id``: default
    the newest report.
    """
    store = open_store(reports_uri, s3_client=s3)
    if ingest_id is None:
        ids = sorted(
            {
                k.split("/", 1)[0]
                for k in store.list()
                if k.count("/") == 1 and k.endswith("/summary.json")
            }
        )
        if not ids:
            raise UsageError(f"no data-quality reports in {reports_uri} yet")
        ingest_id = ids[-1]
    elif not _INGEST_ID.match(ingest_id):
        raise UsageError(f"invalid ingest id {ingest_id!r}")
    if not store.list(ingest_id):
        raise UsageError(f"no report {ingest_id!r} in {reports_uri}")
    local = get_tree(store, ingest_id, dest / ingest_id)
    index = local / "data_docs" / "index.html"
    return index if index.is_file() else local / "summary.json"
