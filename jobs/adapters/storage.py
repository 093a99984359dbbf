"""URI-addressed object storage for the lake and reports: a local directory or ``s3://bucket/prefix``.

Both stores have the same small surface, keys are ``/``-separated relative paths, and every write is
atomic (local: temp file + ``os.replace``; S3: a single PUT). Raw data is written with
``overwrite=False`` so an existing object is never replaced. Local files are created ``0640`` in
``0750`` directories whatever the umask (:func:`private_umask` sets the same for what libraries
create: MLflow's store, logs, Data Docs).
"""

from __future__ import annotations

import logging
import mimetypes
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from jobs.core.errors import StorageError

log = logging.getLogger(__name__)

#: the umask of every entry point: files 0640, directories 0750, nothing for others
UMASK = 0o027
FILE_MODE = 0o640


def private_umask() -> None:
    """Set the process umask to :data:`UMASK` (entry points, once at start; children inherit it),
    so what the product and its libraries create is never group-writable or world-accessible,
    whatever umask the user runs with."""
    os.umask(UMASK)


class Store(Protocol):
    """What the pipeline needs from a storage location."""

    root: str

    def uri(self, key: str) -> str: ...
    def put_bytes(self, key: str, data: bytes, *, overwrite: bool = True) -> str: ...
    def get_bytes(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str = "") -> list[str]: ...
    def put_tree(self, prefix: str, local_dir: Path) -> str: ...


def _check_key(key: str) -> str:
    key = key.strip("/")
    if not key or any(part in ("", ".", "..") for part in key.split("/")):
        raise StorageError(f"invalid storage key {key!r}")
    return key


def _walk(local_dir: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(local_dir.rglob("*")):
        if path.is_file():
            yield path.relative_to(local_dir).as_posix(), path


@dataclass
class LocalStore:
    """A directory on this machine."""

    base: Path

    @property
    def root(self) -> str:
        return str(self.base)

    def path(self, key: str) -> Path:
        return self.base / _check_key(key)

    def uri(self, key: str) -> str:
        return str(self.path(key))

    def put_bytes(self, key: str, data: bytes, *, overwrite: bool = True) -> str:
        target = self.path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.name)
            try:
                os.fchmod(fd, FILE_MODE)  # mkstemp makes 0600; the lake's files are all alike
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                if overwrite:
                    os.replace(tmp, target)
                else:
                    try:
                        os.link(tmp, target)  # atomic create-if-absent
                    except FileExistsError as err:
                        raise StorageError(f"refusing to overwrite existing {target}") from err
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        except OSError as err:
            raise StorageError(f"cannot write {target}: {err.strerror or err}") from err
        return str(target)

    def get_bytes(self, key: str) -> bytes:
        target = self.path(key)
        try:
            return target.read_bytes()
        except FileNotFoundError as err:
            raise StorageError(f"not found: {target}") from err
        except OSError as err:
            raise StorageError(f"cannot read {target}: {err.strerror or err}") from err

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def list(self, prefix: str = "") -> list[str]:
        start = self.base / prefix.strip("/") if prefix.strip("/") else self.base
        if not start.exists():
            return []
        return [
            p.relative_to(self.base).as_posix()
            for p in sorted(start.rglob("*"))
            if p.is_file() and not p.name.startswith(".tmp-")
        ]

    def put_tree(self, prefix: str, local_dir: Path) -> str:
        for rel, path in _walk(local_dir):
            self.put_bytes(f"{prefix.strip('/')}/{rel}", path.read_bytes())
        return self.uri(prefix)


@dataclass
class S3Store:
    """``s3://bucket/prefix`` through boto3 (endpoint from ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL``)."""

    bucket: str
    prefix: str = ""
    client: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.client is None:
            import boto3  # lazy: ~0.5 s to import, and a local lake never needs it

            self.client = boto3.client("s3")
        self.prefix = self.prefix.strip("/")

    @property
    def root(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def key(self, key: str) -> str:
        key = _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.key(key)}"

    def _call(self, what: str, fn, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError  # lazy: see boto3 above

        try:
            return fn(**kwargs)
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "?")
            raise StorageError(
                f"S3 {what} s3://{self.bucket}/{kwargs.get('Key', kwargs.get('Prefix', ''))} failed: {code}"
            ) from err
        except BotoCoreError as err:
            raise StorageError(
                f"S3 unreachable during {what} on s3://{self.bucket}: {err}"
            ) from err

    def put_bytes(self, key: str, data: bytes, *, overwrite: bool = True) -> str:
        full = self.key(key)
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": full, "Body": data}
        content_type = mimetypes.guess_type(full)[0]
        if content_type:  # a browser opening a report page (or its CSS/JS) needs the real type
            kwargs["ContentType"] = content_type
        if not overwrite:
            kwargs["IfNoneMatch"] = "*"  # conditional write: never replace raw data
        self._call("put", self.client.put_object, **kwargs)
        return f"s3://{self.bucket}/{full}"

    def get_bytes(self, key: str) -> bytes:
        resp = self._call("get", self.client.get_object, Bucket=self.bucket, Key=self.key(key))
        return resp["Body"].read()

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError  # lazy: see boto3 above

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key(key))
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise StorageError(f"S3 head s3://{self.bucket}/{self.key(key)} failed: {err}") from err
        return True

    def list(self, prefix: str = "") -> list[str]:
        full = self.prefix + "/" if self.prefix else ""
        if prefix.strip("/"):
            full += prefix.strip("/")
        keys: list[str] = []
        token = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": full}
            if token:
                kwargs["ContinuationToken"] = token
            resp = self._call("list", self.client.list_objects_v2, **kwargs)
            cut = len(self.prefix) + 1 if self.prefix else 0
            keys.extend(obj["Key"][cut:] for obj in resp.get("Contents", []))
            if not resp.get("IsTruncated"):
                return sorted(keys)
            token = resp["NextContinuationToken"]

    def put_tree(self, prefix: str, local_dir: Path) -> str:
        for rel, path in _walk(local_dir):
            self.put_bytes(f"{prefix.strip('/')}/{rel}", path.read_bytes())
        return self.uri(prefix)


def get_tree(store: Store, prefix: str, local_dir: Path) -> Path:
    """Copy every object under ``prefix/`` into ``local_dir`` (the inverse of ``put_tree``).

    All or nothing: the files land in a temporary sibling directory that replaces ``local_dir``
    only once every object is read; a failure leaves ``local_dir`` as it was.
    """
    prefix = _check_key(prefix)
    keys = [k for k in store.list(prefix) if k.startswith(prefix + "/")]
    if not keys:
        raise StorageError(f"nothing stored under {store.uri(prefix)}")
    local_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{local_dir.name}-", dir=local_dir.parent))
    try:
        for key in keys:
            target = tmp / _check_key(key[len(prefix) + 1 :])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(store.get_bytes(key))
        old = None
        if local_dir.exists():
            old = local_dir.with_name(f".old-{local_dir.name}-{os.getpid()}")
            local_dir.rename(old)
        tmp.rename(local_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return local_dir


def open_store(uri: str, *, s3_client: Any = None) -> Store:
    """A store for a directory path, ``file://`` URI or ``s3://bucket/prefix``."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StorageError(f"S3 URI without a bucket: {uri!r}")
        return S3Store(parsed.netloc, parsed.path, client=s3_client)
    if parsed.scheme == "file":
        return LocalStore(Path(parsed.path))
    if parsed.scheme in ("", "c", "d") or len(parsed.scheme) == 1:
        return LocalStore(Path(uri))
    raise StorageError(f"unsupported storage URI {uri!r}: use a path or s3://bucket/prefix")
