"""Glue job script: validate + prepare one batch (DESIGN §3, §8) with the same core as ``abalone ingest``.

Glue runs this file with Glue-style arguments (``--KEY value``; Glue adds its own, which are ignored)::

    --source   s3://<data bucket>/raw/<file>.csv     the batch that arrived (required)
    --lake     s3://<data bucket>/<lake prefix>      lake root: raw/, quarantine/, curated/ (required)
    --reports  s3://<reports bucket>[/<prefix>]      Data Docs + summary.json per ingest (required)
    --env      dev | prd                             stack whose thresholds apply (default dev)
    --run_id   <state machine execution name>        names the result object (optional)
    --max_mb   <float>                               largest batch accepted (default 50)

It calls :func:`jobs.ingest.ingest` with S3 stores for the lake and the reports, so the raw landing,
GX validation, quarantine, curated splits and Data Docs are exactly those of the local path. Then it
records the outcome for the next state of the pipeline, in the lake::

    runs/<run_id>/ingest_result.json     {"status", "dataset_version", "data_quality", "channels", ...}
    runs/<run_id>/dataset/{train,validation,test}.csv, manifest.json   (accepted batches only)

``runs/<run_id>/dataset/`` is the training job's input channel prefix: the state machine knows its own
execution name, so it can point SageMaker at the dataset without reading S3 itself. Without
``--run_id`` the result is written under ``runs/<ingest_id>/`` and no channel copy is made.

Exit: a rejected batch (critical expectation failed, or too many warning rows) raises
:class:`jobs.errors.RejectedError` *after* quarantining it and writing the report and the result
object, so the Glue job run ends ``FAILED`` and the state machine takes its failure branch. Malformed
arguments, a missing source or an unreachable bucket fail before anything is written.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from jobs.errors import RejectedError, StorageError, UsageError

log = logging.getLogger(__name__)

REQUIRED = ("source", "lake", "reports")
OPTIONAL = ("env", "run_id", "max_mb")
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
INGEST_ID_RE = re.compile(r"^\d{8}T\d{12}Z-[0-9a-f]{6}$")
RESULT_NAME = "ingest_result.json"


def result_key(run_id: str) -> str:
    """Where the job records its outcome, relative to the lake root."""
    return f"runs/{run_id}/{RESULT_NAME}"


def dataset_prefix(run_id: str) -> str:
    """The training channel prefix (relative to the lake root) of an accepted batch."""
    return f"runs/{run_id}/dataset"


def _s3(value: str, what: str, *, need_key: bool) -> str:
    parsed = urlparse(value)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"--{what} must be an s3:// URI, got {value!r}")
    if need_key and not parsed.path.strip("/"):
        raise ValueError(f"--{what} must name an object (s3://bucket/key), got {value!r}")
    return value.rstrip("/") if not need_key else value


class GlueArgs(BaseModel):
    """The job's arguments, checked before anything is read or written."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str
    lake: str
    reports: str
    env: Literal["dev", "prd"] = "dev"
    run_id: str | None = None
    max_mb: float | None = Field(default=None, gt=0)

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        return _s3(v, "source", need_key=True)

    @field_validator("lake", "reports")
    @classmethod
    def _roots(cls, v: str, info) -> str:
        return _s3(v, info.field_name, need_key=False)

    @field_validator("run_id")
    @classmethod
    def _run_id(cls, v: str | None) -> str | None:
        if v is not None and not RUN_ID_RE.match(v):
            raise ValueError(
                f"--run_id {v!r} must be 1-80 letters, digits, '.', '_' or '-' (an execution name)"
            )
        return v


def _resolved_options(argv: Sequence[str]) -> dict[str, str]:
    """``--KEY value`` pairs: awsglue's getResolvedOptions on Glue, argparse elsewhere.

    Unknown arguments (Glue passes ``--JOB_NAME``, ``--TempDir``, ``--job-bookmark-option``, …) are
    ignored in both cases.
    """
    argv = list(argv)
    try:
        from awsglue.utils import getResolvedOptions  # type: ignore[import-not-found]
    except ImportError:
        getResolvedOptions = None
    if getResolvedOptions is not None:
        present = [n for n in (*REQUIRED, *OPTIONAL) if f"--{n}" in argv]
        missing = [n for n in REQUIRED if n not in present]
        if missing:
            raise UsageError(f"missing job argument(s): {', '.join('--' + n for n in missing)}")
        return dict(getResolvedOptions(["glue_ingest", *argv], present))

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str):  # argparse would print usage and sys.exit(2)
            raise UsageError(f"bad job arguments: {message}")

    parser = _Parser(prog="glue_ingest", add_help=False, allow_abbrev=False)
    for name in (*REQUIRED, *OPTIONAL):
        flags = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
        parser.add_argument(*flags, dest=name, required=name in REQUIRED)
    known, _unknown = parser.parse_known_args(argv)
    return {k: v for k, v in vars(known).items() if v is not None}


def parse_args(argv: Sequence[str]) -> GlueArgs:
    """Parse and check the job arguments; raises :class:`UsageError` with one line naming the problem."""
    raw = _resolved_options(argv)
    try:
        return GlueArgs(**raw)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "arguments"
        message = first["msg"].removeprefix("Value error, ")
        raise UsageError(f"bad job argument --{field}: {message}") from err


def _check_bucket(client: Any, uri: str, what: str) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket = urlparse(uri).netloc
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "?")
        raise StorageError(f"{what} bucket {bucket!r} is not accessible ({code})") from err
    except BotoCoreError as err:
        raise StorageError(f"S3 unreachable checking {what} bucket {bucket!r}: {err}") from err


def _refuse_relanding(args: GlueArgs) -> None:
    """A batch already landed by an ingest (``<lake>/raw/<ingest_id>/…``) is never ingested again:
    that would copy it to a new ``raw/<ingest_id>/`` and, with an S3 trigger on that prefix, loop."""
    raw_root = args.lake.rstrip("/") + "/raw/"
    if args.source.startswith(raw_root):
        first = args.source[len(raw_root) :].split("/", 1)[0]
        if INGEST_ID_RE.match(first):
            raise UsageError(
                f"{args.source} is a batch an ingest already landed (raw/{first}/); refusing to "
                "ingest it again. Upload new batches outside the lake's raw/<ingest_id>/ folders."
            )


def run(args: GlueArgs, *, s3_client: Any = None, home: Path | None = None) -> dict[str, Any]:
    """Ingest ``args.source`` into the S3 lake; returns the result object (also written to S3).

    Raises :class:`RejectedError` for a rejected batch (after recording it), ``SourceError`` /
    ``StorageError`` for an unreadable source or bucket (before any write).
    """
    import boto3

    from jobs.fetch import fetch
    from jobs.ingest import ingest
    from jobs.settings import FetchLimits, load_settings
    from jobs.storage import open_store

    client = s3_client or boto3.client("s3")
    _refuse_relanding(args)
    overrides: dict[str, Any] = {}
    if args.max_mb is not None:
        overrides["fetch"] = FetchLimits(max_bytes=int(args.max_mb * 1024 * 1024))
    with tempfile.TemporaryDirectory(prefix="abalone-glue-") as tmp:
        settings = load_settings(
            args.env,
            environ={},
            home=home or Path(tmp),
            lake=args.lake,
            reports=args.reports,
            tracking_uri="unused://glue-ingest",
            **overrides,
        )
        # Pre-flight, before the first write: the source is readable and within limits, and
        # both buckets answer. A failure here leaves no object behind.
        fetched = fetch(args.source, limits=settings.fetch, s3_client=client)
        _check_bucket(client, args.lake, "lake")
        _check_bucket(client, args.reports, "reports")
        lake = open_store(args.lake, s3_client=client)
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
    accepted = outcome.ok
    result: dict[str, Any] = {
        "run_id": run_id,
        "ingest_id": summary["ingest_id"],
        "env": args.env,
        "status": summary["status"],
        "data_quality": "passed" if accepted else "failed",
        "dataset_version": summary.get("dataset_version"),
        "rows_total": summary["rows_total"],
        "rows_accepted": summary["rows_accepted"],
        "rows_quarantined": summary["rows_quarantined"],
        "splits": summary.get("splits"),
        "source": args.source,
        "raw_uri": summary["raw_uri"],
        "curated_uri": summary.get("curated_uri"),
        "quarantine_uri": summary.get("quarantine_uri"),
        "report_html": summary["report_html"],
        "summary_json": summary["summary_json"],
        "failed_expectations": summary.get("failed_expectations", []),
        "problems": (summary.get("problems") or [])[:20],
        "channels": None,
    }
    if accepted and args.run_id:
        version = summary["dataset_version"]
        prefix = dataset_prefix(run_id)
        for name in ("train.csv", "validation.csv", "test.csv", "manifest.json"):
            lake.put_bytes(f"{prefix}/{name}", lake.get_bytes(f"curated/{version}/{name}"))
        channel = lake.uri(prefix) + "/"
        result["channels"] = {"train": channel, "validation": channel, "test": channel}
    result["result_uri"] = lake.put_bytes(
        result_key(run_id), (json.dumps(result, indent=2, default=str) + "\n").encode()
    )
    log.info(
        "ingest %s %s: dataset %s, report %s",
        summary["ingest_id"],
        summary["status"],
        summary.get("dataset_version"),
        summary["report_html"],
    )
    if not accepted:
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
    import os

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
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
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    main()
