"""Glue job script: validate + prepare one batch (DESIGN §3, §8) with :func:`jobs.ingestion.ingest`,
the same ingest as ``abalone ingest``, on S3 stores.

Arguments (``--KEY value``; Glue's own and unknown ones are ignored): ``--source`` (the batch),
``--run_id`` (the execution), ``--lake``, ``--reports``, ``--env``; optional ``--result_uri`` and
``--max_mb`` (synonyms and details: docs/CONTRACTS.md). It writes the compact *result object* the
state machine reads (status, dataset version, data quality, report links, training channels) to
``Lake.run_result_key(run_id)``. A batch rejected by the contract raises :class:`RejectedError`
after it is quarantined and recorded (the run ends FAILED); bad arguments, an unreadable source or
an unreachable bucket raise before anything is written.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import tempfile
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import urlparse

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from jobs.adapters.fetch import fetch
from jobs.adapters.lake import Lake
from jobs.adapters.settings import FetchLimits, default_environ, load_settings, megabytes
from jobs.adapters.storage import open_store
from jobs.core.errors import RejectedError, StorageError, UsageError
from jobs.core.redact import RedactingFilter
from jobs.ingestion.ingest import ingest

log = logging.getLogger(__name__)

#: canonical name → accepted argument names (first is what the state machine/component passes).
ARGUMENTS: dict[str, tuple[str, ...]] = {
    "source": ("source", "source_uri"),
    "lake": ("lake", "lake_uri"),
    "reports": ("reports", "reports_uri"),
    "env": ("env", "stack"),
    "run_id": ("run_id", "execution_id"),
    "result_uri": ("result_uri",),
    "max_mb": ("max_mb",),
}
REQUIRED = ("source", "lake", "reports")
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
MAX_PROBLEMS = 20


def _s3(value: str, flag: str, *, need_key: bool) -> str:
    parsed = urlparse(value)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"{flag} must be an s3:// URI, got {value!r}")
    if need_key and not parsed.path.strip("/"):
        raise ValueError(f"{flag} must name an object (s3://bucket/key), got {value!r}")
    return value if need_key else value.rstrip("/")


class GlueArgs(BaseModel):
    """The job's arguments, checked before anything is read or written."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str
    lake: str
    reports: str
    env: Literal["dev", "prd"] = "dev"
    run_id: str | None = None
    result_uri: str | None = None
    max_mb: float | None = Field(default=None, gt=0)

    @field_validator("source", "result_uri")
    @classmethod
    def _object(cls, v: str | None, info) -> str | None:
        return None if v is None else _s3(v, _flag(info.field_name), need_key=True)

    @field_validator("lake", "reports")
    @classmethod
    def _roots(cls, v: str, info) -> str:
        return _s3(v, _flag(info.field_name), need_key=False)

    @field_validator("run_id")
    @classmethod
    def _run_id(cls, v: str | None) -> str | None:
        if v is not None and not RUN_ID_RE.match(v):
            raise ValueError(f"--execution_id {v!r} must be 1-80 letters, digits, '.', '_' or '-'")
        return v


def _flag(field: str) -> str:
    return "--" + ARGUMENTS[field][0]


def _resolved_options(argv: Sequence[str]) -> dict[str, str]:
    """``--KEY value`` pairs: awsglue's getResolvedOptions on Glue, argparse elsewhere; unknown
    arguments are ignored in both cases. Returns canonical names."""
    argv = list(argv)
    try:
        # optional: awsglue exists only inside a Glue job run
        from awsglue.utils import getResolvedOptions  # type: ignore[import-not-found]
    except ImportError:
        getResolvedOptions = None
    names = {alias: canon for canon, aliases in ARGUMENTS.items() for alias in aliases}
    if getResolvedOptions is not None:
        present = [alias for alias in names if f"--{alias}" in argv]
        raw = dict(getResolvedOptions(["glue_ingest", *argv], present)) if present else {}
    else:

        class _Parser(argparse.ArgumentParser):
            def error(self, message: str):  # argparse would print usage and sys.exit(2)
                raise UsageError(f"bad job arguments: {message}")

        parser = _Parser(prog="glue_ingest", add_help=False, allow_abbrev=False)
        for alias in names:
            flags = [f"--{alias}"] + ([f"--{alias.replace('_', '-')}"] if "_" in alias else [])
            parser.add_argument(*flags, dest=alias)
        known, _unknown = parser.parse_known_args(argv)
        raw = {k: v for k, v in vars(known).items() if v is not None}
    resolved: dict[str, str] = {}
    for alias, value in raw.items():
        canon = names[alias]
        if canon in resolved and resolved[canon] != value:
            raise UsageError(f"conflicting values for {_flag(canon)} and its synonym --{alias}")
        resolved[canon] = value
    missing = [_flag(c) for c in REQUIRED if c not in resolved]
    if missing:
        raise UsageError(f"missing job argument(s): {', '.join(missing)}")
    return resolved


def parse_args(argv: Sequence[str]) -> GlueArgs:
    """Parse and check the job arguments; raises :class:`UsageError` with one line naming the problem."""
    raw = _resolved_options(argv)
    try:
        return GlueArgs(**raw)
    except ValidationError as err:
        first = err.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        message = first["msg"].removeprefix("Value error, ")
        where = _flag(field) if field in ARGUMENTS else "arguments"
        raise UsageError(f"bad job argument {where}: {message}") from err


def _check_bucket(client: Any, uri: str, what: str) -> None:
    bucket = urlparse(uri).netloc
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "?")
        raise StorageError(f"{what} bucket {bucket!r} is not accessible ({code})") from err
    except BotoCoreError as err:
        raise StorageError(f"S3 unreachable checking {what} bucket {bucket!r}: {err}") from err


def _refuse_relanding(args: GlueArgs, lake: Lake) -> None:
    """A batch an ingest already landed (``<lake>/raw/<ingest_id>/…``) is never ingested again:
    that would copy it to a new ``raw/<ingest_id>/`` and, with an S3 trigger on ``raw/``, loop."""
    first = lake.landed_ingest(args.source)
    if first:
        raise UsageError(
            f"{args.source} is a batch an ingest already landed (raw/{first}/); refusing to "
            "ingest it again. Upload new batches directly under raw/, not into raw/<ingest_id>/."
        )


def compact_result(summary: dict[str, Any], *, run_id: str, env: str) -> dict[str, Any]:
    """The result object the state machine reads: small, no per-expectation detail."""
    accepted = summary["status"] == "accepted"
    return {
        "run_id": run_id,
        "ingest_id": summary["ingest_id"],
        "env": env,
        "status": summary["status"],
        "data_quality": "passed" if accepted else "failed",
        "dataset_version": summary.get("dataset_version"),
        "rows_total": summary["rows_total"],
        "rows_accepted": summary["rows_accepted"],
        "rows_quarantined": summary["rows_quarantined"],
        "splits": summary.get("splits"),
        "source": (summary.get("source") or {}).get("source"),
        "source_sha256": (summary.get("source") or {}).get("sha256"),
        "raw_uri": summary["raw_uri"],
        "curated_uri": summary.get("curated_uri"),
        "quarantine_uri": summary.get("quarantine_uri"),
        "report_html": summary["report_html"],
        "summary_json": summary["summary_json"],
        "failed_expectations": list(summary.get("failed_expectations") or []),
        "problems": list(summary.get("problems") or [])[:MAX_PROBLEMS],
        "problems_total": len(summary.get("problems") or []),
        "channels": None,
    }


def run(args: GlueArgs, *, s3_client: Any = None) -> dict[str, Any]:
    """Ingest ``args.source`` into the S3 lake; write and return the result object.

    Raises :class:`RejectedError` for a rejected batch (after quarantining and recording it), and
    ``UsageError``/``SourceError``/``StorageError`` before any write for bad input.
    """
    client = s3_client or boto3.client("s3")
    lake = Lake.open(args.lake, s3_client=client)
    _refuse_relanding(args, lake)
    overrides: dict[str, Any] = {}
    if args.max_mb is not None:
        overrides["fetch"] = FetchLimits(max_bytes=megabytes(args.max_mb, "--max_mb"))
    with tempfile.TemporaryDirectory(prefix="abalone-glue-") as tmp:
        settings = load_settings(
            args.env, home=tmp, lake=args.lake, reports=args.reports, **overrides
        )
        # Pre-flight, before the first write: the source is readable and within limits, and every
        # bucket we write to answers. A failure here leaves no object behind.
        fetched = fetch(args.source, limits=settings.fetch, s3_client=client)
        _check_bucket(client, args.lake, "lake")
        _check_bucket(client, args.reports, "reports")
        if args.result_uri:
            _check_bucket(client, args.result_uri, "result")
        reports = open_store(args.reports, s3_client=client)
        outcome = ingest(
            settings,
            args.source,
            lake=lake,
            reports=reports,
            fetched=fetched,
            progress=lambda msg: log.info("%s", msg),
        )
    summary = outcome.summary
    run_id = args.run_id or summary["ingest_id"]
    result = compact_result(summary, run_id=run_id, env=args.env)
    if outcome.ok:
        channel = lake.curated_uri(summary["dataset_version"]) + "/"
        result["channels"] = {"train": channel, "validation": channel, "test": channel}
    if args.result_uri:
        parent, name = args.result_uri.rsplit("/", 1)
        target, key = open_store(parent, s3_client=client), name
    else:
        target, key = lake.store, Lake.run_result_key(run_id)
    result["result_uri"] = target.uri(key)
    target.put_bytes(key, (json.dumps(result, indent=2, default=str) + "\n").encode())
    log.info(
        "ingest %s %s: dataset %s, report %s, result %s",
        summary["ingest_id"],
        summary["status"],
        summary.get("dataset_version"),
        summary["report_html"],
        result["result_uri"],
    )
    if not outcome.ok:
        first = (summary.get("problems") or ["batch failed the data contract"])[0]
        raise RejectedError(
            f"batch {summary['ingest_id']} rejected and quarantined ({summary['quarantine_uri']}): "
            f"{first}"
        )
    return result


def main(argv: Sequence[str] | None = None, *, s3_client: Any = None) -> dict[str, Any]:
    """The Glue entry: parse ``argv`` (default ``sys.argv[1:]``), run, return the result object.

    Errors propagate (Glue marks the run FAILED and shows the message); the message is logged first.
    """
    default_environ(GX_ANALYTICS_ENABLED="false")
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        return run(args, s3_client=s3_client)
    except Exception as err:
        log.error("glue ingest failed: %s", err)
        raise


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for _handler in logging.getLogger().handlers:
        _handler.addFilter(RedactingFilter())  # no URL credentials in the job's log
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    main()
