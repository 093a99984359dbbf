"""Fetch a batch from a local path, an ``http(s)://`` URL or an ``s3://`` URI, with limits.

Every fetch returns the bytes and their lineage (source, size, sha256). The default source is the
UCI file shipped in the package (``package:abalone.csv``, no network); ``uci`` names the original
URL. Downloads have a per-read timeout, a total deadline, a size limit and a cache under
``$ABALONE_HOME/cache`` (keyed by a digest of the URL). A truncated or late download is an error,
never a batch, and leaves nothing in the cache. The request uses the URL as given; the lineage, the
cache metadata, log lines and error messages carry it redacted (:mod:`jobs.core.redact`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

from jobs.adapters.settings import UCI_ABALONE_URL, FetchLimits
from jobs.adapters.storage import open_store
from jobs.core.errors import SourceError, StorageError, UsageError
from jobs.core.redact import redact

log = logging.getLogger(__name__)

#: The UCI abalone file shipped inside the package: the default source (DESIGN §4).
PACKAGE_SOURCE = "package:abalone.csv"
_SHIPPED = {"abalone.csv"}


def resolve_source(source: str | None) -> str:
    """``--source`` as given → what :func:`fetch` reads: none → the shipped file, ``uci`` → the
    original URL, anything else unchanged. An empty or blank value is a usage error."""
    if source is None:
        return PACKAGE_SOURCE
    if not source.strip():
        raise UsageError(
            "--source is empty: give a path, http(s):// URL, s3:// URI or `uci`, "
            "or leave it out for the shipped UCI file"
        )
    if source.strip().lower() == "uci":
        return UCI_ABALONE_URL
    return source


def shipped_data_path(name: str = "abalone.csv") -> Path:
    """The file behind ``package:<name>`` (package data of ``jobs``)."""
    if name not in _SHIPPED:
        raise SourceError(
            f"no shipped data named {name!r}; the package ships {', '.join(sorted(_SHIPPED))}"
        )
    path = Path(str(files("jobs") / "resources" / name))
    if not path.is_file():
        raise SourceError(f"the shipped {name} is missing from this install ({path}); reinstall")
    return path


def fetch_package(source: str, limits: FetchLimits) -> Fetched:
    name = source.split(":", 1)[1]
    fetched = fetch_local(shipped_data_path(name), limits)
    return _done(fetched.data, source, name)


@dataclass(frozen=True)
class Fetched:
    data: bytes
    source: str
    name: str
    sha256: str
    size: int
    fetched_at: str
    cached: bool = False

    def lineage(self) -> dict[str, Any]:
        meta = asdict(self)
        del meta["data"]
        return meta


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _safe_name(raw: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.basename(raw.rstrip("/"))).strip("._")
    return name[:100] or "batch.csv"


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"


def _too_large(source: str, size: int, limits: FetchLimits) -> SourceError:
    return SourceError(
        f"{source} is {_mb(size)}, above the {_mb(limits.max_bytes)} batch limit "
        "(split the batch, or raise the limit with --max-mb)"
    )


def _done(data: bytes, source: str, name: str, cached: bool = False) -> Fetched:
    return Fetched(
        data=data,
        source=source,
        name=name,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        fetched_at=_now(),
        cached=cached,
    )


def fetch_local(path: Path, limits: FetchLimits) -> Fetched:
    if not path.exists():
        raise SourceError(f"no such file: {path}")
    if not path.is_file():
        raise SourceError(f"not a regular file: {path}")
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise _too_large(str(path), size, limits)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise SourceError(f"cannot read {path}: {err.strerror or err}") from err
    return _done(data, str(path.absolute()), _safe_name(path.name))


def fetch_http(url: str, limits: FetchLimits, cache_dir: Path | None, refresh: bool) -> Fetched:
    key = hashlib.sha256(url.encode()).hexdigest()[:24]  # a digest: the URL itself is not stored
    shown = redact(url)
    cached = cache_dir / key if cache_dir else None
    name = _safe_name(urlparse(url).path) or "batch.csv"
    if cached and not refresh and (cached / "data").is_file() and (cached / "meta.json").is_file():
        data = (cached / "data").read_bytes()
        meta = json.loads((cached / "meta.json").read_text())
        if hashlib.sha256(data).hexdigest() == meta.get("sha256"):
            log.info("using cached download of %s", shown)
            return _done(data, shown, name, cached=True)
    chunks: list[bytes] = []
    received = 0
    deadline = time.monotonic() + limits.deadline_s
    late = SourceError(
        f"download of {shown} did not finish within the {limits.deadline_s:g}s deadline "
        "(ABALONE_FETCH_DEADLINE_S); nothing was kept"
    )
    try:
        timeout = min(limits.timeout_s, limits.deadline_s)
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as resp:
            if resp.status_code != 200:
                raise SourceError(f"download failed: HTTP {resp.status_code} from {shown}")
            announced = resp.headers.get("content-length")
            if announced and int(announced) > limits.max_bytes:
                raise _too_large(shown, int(announced), limits)
            for chunk in resp.iter_raw():
                received += len(chunk)
                if received > limits.max_bytes:
                    raise _too_large(shown, received, limits)
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise late
            if announced and received != int(announced):
                raise SourceError(
                    f"download truncated: got {received} of {announced} bytes from {shown}"
                )
    except httpx.TimeoutException as err:
        if time.monotonic() > deadline:
            raise late from err
        raise SourceError(f"download timed out after {timeout:g}s: {shown}") from err
    except httpx.RemoteProtocolError as err:
        raise SourceError(
            f"download truncated after {received} bytes from {shown}: {redact(str(err))}"
        ) from err
    except httpx.HTTPError as err:
        raise SourceError(f"download failed from {shown}: {redact(str(err))}") from err
    fetched = _done(b"".join(chunks), shown, name)
    if cached:
        try:
            cached.mkdir(parents=True, exist_ok=True)
            tmp = cached / "data.tmp"
            tmp.write_bytes(fetched.data)
            os.replace(tmp, cached / "data")
            (cached / "meta.json").write_text(json.dumps(fetched.lineage()))
        except OSError as err:  # a cache failure never fails the ingest
            log.warning("could not cache %s: %s", shown, err)
    return fetched


def fetch_s3(uri: str, limits: FetchLimits, s3_client: Any = None) -> Fetched:
    parsed = urlparse(uri)
    key = parsed.path.lstrip("/")
    if not parsed.netloc or not key:
        raise SourceError(f"S3 source needs s3://bucket/key, got {uri!r}")
    store = open_store(f"s3://{parsed.netloc}", s3_client=s3_client)
    try:
        head = store.client.head_object(Bucket=parsed.netloc, Key=key)  # type: ignore[attr-defined]
    except Exception as err:
        raise SourceError(f"cannot read {uri}: {_aws_reason(err)}") from err
    if head["ContentLength"] > limits.max_bytes:
        raise _too_large(uri, head["ContentLength"], limits)
    try:
        data = store.get_bytes(key)
    except StorageError as err:
        raise SourceError(str(err)) from err
    return _done(data, uri, _safe_name(key))


def _aws_reason(err: Exception) -> str:
    response = getattr(err, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code", "")
        return {"404": "no such object", "403": "access denied"}.get(code, code or str(err))
    return str(err)


def fetch(
    source: str,
    *,
    limits: FetchLimits | None = None,
    cache_dir: Path | None = None,
    refresh: bool = False,
    s3_client: Any = None,
) -> Fetched:
    """Read ``source`` within ``limits``; raises :class:`SourceError` with one clear line."""
    limits = limits or FetchLimits()
    scheme = urlparse(source).scheme.lower()
    if scheme == "package":
        return fetch_package(source, limits)
    if scheme in ("http", "https"):
        return fetch_http(source, limits, cache_dir, refresh)
    if scheme == "s3":
        return fetch_s3(source, limits, s3_client)
    if scheme == "file":
        return fetch_local(Path(urlparse(source).path), limits)
    if scheme and len(scheme) > 1:
        raise SourceError(
            f"unsupported source {redact(source)!r}: use a path, http(s):// or s3://, or `uci`"
        )
    return fetch_local(Path(source), limits)
