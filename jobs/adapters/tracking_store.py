"""The MLflow tracking store: reachability, the stack's experiment, and scoping MLflow's
process-wide URIs (the fluent logging API and the SQLite registry read them) to one block."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.tracking._model_registry import utils as registry_utils
from mlflow.tracking._tracking_service import utils as tracking_utils

from jobs.adapters.locking import store_lock
from jobs.adapters.settings import Settings, scoped_environ
from jobs.core.errors import ServiceError, UsageError
from jobs.core.redact import redact


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(
        uri[len("sqlite:///") :] if uri.startswith("sqlite:////") else uri[len("sqlite://") :]
    )


def _probe_sqlite(path: Path, shown: str, timeout_s: float) -> None:
    """Open the SQLite file once (creating it, as MLflow would): MLflow itself retries a store it
    cannot open for ~100 s and then raises SQLAlchemy's error as a traceback."""
    try:
        with contextlib.closing(sqlite3.connect(str(path), timeout=timeout_s)) as db:
            db.execute("PRAGMA schema_version")
    except sqlite3.Error as err:
        raise ServiceError(f"MLflow tracking store {shown} cannot be opened: {err}") from err


# MLflow's SQLAlchemy stores other than SQLite, and the driver arguments bounding one connection
# (libpq's connect_timeout covers the whole handshake; a MySQL client also waits for the server's
# greeting, which only read_timeout bounds). SQL Server: its drivers' own defaults.
DATABASE_TIMEOUT_ARGS = {
    "postgresql": ("connect_timeout",),
    "mysql": ("connect_timeout", "read_timeout", "write_timeout"),
    "mssql": (),
}


def _probe_database(uri: str, shown: str, timeout_s: float, arguments: tuple[str, ...]) -> None:
    """One bounded connection to a database store. MLflow opens one with 10 attempts and an
    exponential back-off (0.1 s doubling: about 100 s of waiting) before it raises, and a server
    that accepts but never answers holds each attempt without end, so a wrong host, a closed port
    or a silent proxy would look like a hang. A missing driver raises
    ``ImportError`` (the caller names the module to install). ``arguments``: the driver's timeout
    arguments (:data:`DATABASE_TIMEOUT_ARGS`)."""
    import sqlalchemy  # MLflow's own dependency; imported here: only database stores need it
    from sqlalchemy.pool import NullPool

    connect_args = dict.fromkeys(arguments, max(1, round(timeout_s)))
    engine = sqlalchemy.create_engine(uri, poolclass=NullPool, connect_args=connect_args)
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.SQLAlchemyError as err:
        raise ServiceError(
            f"MLflow tracking store {shown} is unreachable: {redact(first_line(err))}; "
            "check the host, port, database and credentials in MLFLOW_TRACKING_URI"
        ) from err
    finally:
        engine.dispose()


def check_tracking(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast (seconds) with one clear line when the tracking store cannot be reached."""
    shown = redact(uri)
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        url = uri.rstrip("/") + "/health"
        try:
            resp = httpx.get(url, timeout=timeout_s)
        except httpx.HTTPError as err:
            raise ServiceError(
                f"MLflow tracking server {shown} is unreachable "
                f"({type(err).__name__}: {redact(str(err))}); start it or fix MLFLOW_TRACKING_URI"
            ) from err
        if resp.status_code >= 400:
            raise ServiceError(
                f"MLflow tracking server {shown} answered HTTP {resp.status_code} on /health"
            )
        return
    sqlite = _sqlite_path(uri)
    if sqlite is not None:
        try:
            sqlite.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ServiceError(
                f"cannot create the MLflow store directory {sqlite.parent}: {err}"
            ) from err
        _probe_sqlite(sqlite, shown, timeout_s)

    # the first open of a SQLite store creates and migrates its schema: one process at a time
    creation = (
        store_lock(uri, purpose="store creation")
        if sqlite is not None
        else contextlib.nullcontext()
    )
    try:
        dialect = scheme.split("+", 1)[0]  # postgresql+psycopg2 → postgresql
        if dialect in DATABASE_TIMEOUT_ARGS:
            _probe_database(uri, shown, timeout_s, DATABASE_TIMEOUT_ARGS[dialect])
        with (
            creation,
            scoped_environ(  # MLflow's REST client without retries, with a short timeout
                MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
                MLFLOW_HTTP_REQUEST_TIMEOUT=str(int(max(1, timeout_s))),
            ),
        ):
            MlflowClient(tracking_uri=uri, registry_uri=uri).search_experiments(max_results=1)
    except ImportError as err:  # a database URI whose driver is not installed
        raise UsageError(
            f"MLFLOW_TRACKING_URI {shown} needs the module `{err.name}`, which is not installed "
            "(pip install its driver, or use sqlite:/// or http://)"
        ) from err
    except (MlflowException, OSError) as err:
        raise ServiceError(
            f"MLflow tracking store {shown} is unreachable: {redact(first_line(err))}"
        ) from err


def artifact_location(settings: Settings) -> str | None:
    """Where a new experiment keeps artifacts: ``$ABALONE_HOME/mlartifacts/<experiment>`` for a local
    (SQLite/file) store, so ``abalone ui`` can serve them; the server's default otherwise."""
    scheme = urlparse(settings.tracking_uri).scheme
    if scheme in ("sqlite", "file", ""):
        return (settings.home / "mlartifacts" / settings.experiment_name).absolute().as_uri()
    return None


def ensure_experiment(client: Any, settings: Settings) -> str:
    """The id of the stack's experiment, created on first use."""

    name = settings.experiment_name
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            raise UsageError(f"experiment {name!r} is deleted; restore it in the MLflow UI")
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location(settings))
    except MlflowException:  # created concurrently
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def parse_models_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/name@alias`` → (name, alias, None); ``models:/name/3`` → (name, None, "3")."""
    rest = uri[len("models:/") :].strip("/")
    if "@" in rest:
        name, alias = rest.split("@", 1)
        if name and alias and "/" not in alias:
            return name, alias, None
    elif "/" in rest:
        name, version = rest.split("/", 1)
        if name and version.isdigit():
            return name, None, version
    raise UsageError(f"{uri!r}: use models:/<name>@<alias> or models:/<name>/<version>")


@contextlib.contextmanager
def using_tracking_uri(tracking_uri: str) -> Iterator[None]:
    """MLflow's process-wide tracking and registry URIs set to ``tracking_uri`` for a block and
    restored after it: for the fluent API (``log_model``) and for the SQLite registry, which
    resolves a logged model's ``models:/m-…`` source through them."""
    old_tracking = getattr(tracking_utils, "_tracking_uri", None)  # as set (or None), not the
    old_registry = getattr(registry_utils, "_registry_uri", None)  # defaults get_*_uri() invent
    # set_*_uri also (un)set MLFLOW_TRACKING_URI/MLFLOW_REGISTRY_URI: restore those last
    with scoped_environ(MLFLOW_TRACKING_URI=tracking_uri, MLFLOW_REGISTRY_URI=tracking_uri):
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(old_tracking)
            mlflow.set_registry_uri(old_registry)


@contextlib.contextmanager
def fluent_run(tracking_uri: str, **start_run: Any) -> Iterator[Any]:
    """``mlflow.start_run`` against ``tracking_uri`` (see :func:`using_tracking_uri`)."""
    with using_tracking_uri(tracking_uri), mlflow.start_run(**start_run) as run:
        yield run


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__
