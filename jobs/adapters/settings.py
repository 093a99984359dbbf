"""Typed settings: the one loader for the CLI, the training job, Glue and Lambda (DESIGN §9).

Values come from keyword overrides, then the environment (pydantic-settings, prefix ``ABALONE_``;
the tracking store from ``MLFLOW_TRACKING_URI``), then defaults derived from ``ABALONE_HOME``:

- ``ABALONE_HOME`` (default ``./.mlops``): the embedded local default (DESIGN §4);
- ``ABALONE_LAKE``: lake root, a directory or ``s3://bucket/prefix`` (default ``$ABALONE_HOME/lake``);
- ``ABALONE_REPORTS``: data-quality reports (default ``$ABALONE_HOME/reports``, or ``<lake>/reports``
  for an S3 lake);
- ``MLFLOW_TRACKING_URI``: tracking/registry store (default ``sqlite:///$ABALONE_HOME/mlflow.db``);
- ``ABALONE_ENV`` (entry points only; the CLI takes ``--env``), and the AWS deployment's
  ``ABALONE_CAPTURE_URI``, ``ABALONE_STAGING_ENDPOINT``, ``ABALONE_STATE_MACHINE_ARN``,
  ``ABALONE_METRIC_NAMESPACE``, ``ABALONE_PROMOTION_LOCK_TABLE`` and
  ``ABALONE_PROMOTION_LOCK_LEASE_S`` (the stack's promotion lock), ``ABALONE_GIT_SHA``;
- ``ABALONE_FETCH_DEADLINE_S``: the most a download of a URL source may take in all (default 120).

This is the only module that reads ``os.environ`` (plus :func:`scoped_environ` for the few library
switches MLflow only takes from the environment).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from jobs.core.errors import UsageError
from jobs.core.policy import MODEL_NAME, STACKS, Env, StackPolicy

__all__ = [
    "MODEL_NAME",
    "STACKS",
    "UCI_ABALONE_URL",
    "Env",
    "FetchLimits",
    "Settings",
    "StackPolicy",
    "environ_value",
    "load_settings",
    "scoped_environ",
]

UCI_ABALONE_URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/abalone/abalone.data"

_ENVIRON: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "abalone_environ", default=None
)


class MissingSetting(UsageError):
    """Required settings that neither the caller nor the environment gave; ``names`` are the
    environment variables to set."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(f"{', '.join(names)} not set")
        self.names = names


class FetchLimits(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    timeout_s: float = Field(default=30.0, gt=0, allow_inf_nan=False, description="per read")
    deadline_s: float = Field(default=120.0, gt=0, allow_inf_nan=False, description="in all")
    max_bytes: int = Field(default=50 * 1024 * 1024, gt=0)


def megabytes(value: float, option: str) -> int:
    """``--max-mb``-style option (MB, a float) → bytes; anything but a finite size of at least one
    byte (``nan``, ``inf``, ``0``, ``1e-9``, negative) is a usage error naming the option."""
    size = value * 1024 * 1024 if math.isfinite(value) else math.nan
    if not (math.isfinite(size) and 1 <= size <= 2**53):
        raise UsageError(f"{option} {value:g} is not a size: give a positive number of MB")
    return int(size)


class _Mapping(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {k.lower(): v for k, v in self._environ.items() if v != ""}


class _FromEnvironment(BaseSettings):
    """What the environment says (everything optional); :func:`load_settings` fills the gaps."""

    model_config = SettingsConfigDict(
        env_prefix="ABALONE_",
        env_ignore_empty=True,
        frozen=True,
        extra="ignore",
        populate_by_name=True,
    )

    home: Path | None = None
    lake: str | None = None
    reports: str | None = None
    tracking_uri: str | None = Field(
        default=None, validation_alias=AliasChoices("tracking_uri", "MLFLOW_TRACKING_URI")
    )
    env: str | None = None
    capture_uri: str | None = None
    staging_endpoint: str | None = None
    state_machine_arn: str | None = None
    metric_namespace: str | None = None
    promotion_lock_table: str | None = None
    promotion_lock_lease_s: float | None = Field(default=None, gt=0)
    git_sha: str | None = None
    fetch_deadline_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ):
        environ = _ENVIRON.get()
        return (init_settings, env_settings if environ is None else _Mapping(settings_cls, environ))


class Settings(BaseModel):
    """Everything a job needs to know about where things live. Build with :func:`load_settings`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    home: Path
    lake: str
    reports: str
    tracking_uri: str
    env: Env = "dev"
    seed: int = 0
    fetch: FetchLimits = FetchLimits()
    capture_uri: str | None = None
    staging_endpoint: str | None = None
    state_machine_arn: str | None = None
    metric_namespace: str | None = None
    promotion_lock_table: str | None = None
    promotion_lock_lease_s: float | None = Field(default=None, gt=0)
    git_sha: str | None = None

    @property
    def policy(self) -> StackPolicy:
        return STACKS[self.env]

    @property
    def experiment_name(self) -> str:
        return f"abalone-{self.env}"

    @property
    def capture_dir(self) -> Path:
        return self.home / "capture"

    @property
    def monitoring_dir(self) -> Path:
        return self.home / "monitoring"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"


def load_settings(
    env: str | None = "dev",
    environ: Mapping[str, str] | None = None,
    *,
    defaults: Mapping[str, Any] | None = None,
    required: tuple[str, ...] = (),
    **overrides: Any,
) -> Settings:
    """Settings from ``overrides``, then the environment (``environ``, default ``os.environ``), then
    ``defaults`` (an entry point's own, e.g. ``home`` on Lambda's writable ``/tmp``), then the
    embedded local defaults. A name in ``required`` must come from the first three.

    ``env`` is the stack (``dev``/``prd``); ``None`` takes ``ABALONE_ENV`` (default ``dev``), which is
    what the job entry points (training, Glue, Lambda) do.
    """
    token = _ENVIRON.set(environ)
    try:
        given = _FromEnvironment(**{k: v for k, v in overrides.items() if k in _ENV_FIELDS})
    except ValidationError as err:
        first = err.errors()[0]
        field = str(first["loc"][0]) if first.get("loc") else ""
        name = _ENV_NAMES.get(field, f"ABALONE_{field.upper()}") if field else "setting"
        raise UsageError(f"bad setting {name}: {first['msg']}") from err
    finally:
        _ENVIRON.reset(token)
    fill = {k: v for k, v in (defaults or {}).items() if getattr(given, k) is None}
    given = given.model_copy(update=fill)
    missing = [name for name in required if getattr(given, name) is None]
    if missing:
        names = [_ENV_NAMES.get(name, f"ABALONE_{name.upper()}") for name in missing]
        raise MissingSetting(names)
    rest = {k: v for k, v in overrides.items() if k not in _ENV_FIELDS}
    stack = env or given.env or "dev"
    if stack not in STACKS:
        raise UsageError(f"unknown stack {stack!r}; choose one of {', '.join(STACKS)}")
    home = Path(given.home or ".mlops").absolute()
    lake = given.lake or str(home / "lake")
    if lake.startswith("s3://"):
        default_reports = lake.rstrip("/") + "/reports"
    else:
        lake = str(Path(lake).absolute())
        default_reports = str(home / "reports")
    values = given.model_dump(
        exclude={"home", "lake", "reports", "tracking_uri", "env", "fetch_deadline_s"}
    )
    if given.fetch_deadline_s is not None:
        fetch = rest.get("fetch") or FetchLimits()
        rest["fetch"] = fetch.model_copy(update={"deadline_s": given.fetch_deadline_s})
    return Settings(
        home=home,
        lake=lake,
        reports=given.reports or default_reports,
        tracking_uri=given.tracking_uri or f"sqlite:///{home / 'mlflow.db'}",
        env=stack,  # type: ignore[arg-type]
        **values,
        **rest,
    )


_ENV_FIELDS = frozenset(_FromEnvironment.model_fields) - {"env"}
_ENV_NAMES = {"tracking_uri": "MLFLOW_TRACKING_URI"}


def environ_value(name: str, default: str | None = None) -> str | None:
    """One raw environment variable, for settings that belong to a runtime contract rather than to
    :class:`Settings` (e.g. ``ABALONE_MAX_ROWS`` in the SageMaker serving container)."""
    value = os.environ.get(name)
    return default if value in (None, "") else value


def environment() -> dict[str, str]:
    """A copy of the process environment, for entry points that hand it to a child process or to
    a contract reader (SageMaker's ``SM_*`` variables)."""
    return dict(os.environ)


@contextlib.contextmanager
def scoped_environ(**values: str) -> Iterator[None]:
    """Set environment variables for the duration of a block and restore them after (MLflow reads
    some switches, such as HTTP retries or the artifact progress bar, only from the environment)."""
    old = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def set_environ(**values: str) -> None:
    """Set environment variables an entry point owns for the rest of the process (library switches
    read from the environment, e.g. ``MLFLOW_CONFIGURE_LOGGING``)."""
    os.environ.update(values)


def default_environ(**values: str) -> None:
    """``os.environ.setdefault`` for quiet library defaults an entry point sets once at start."""
    for key, value in values.items():
        os.environ.setdefault(key, value)
