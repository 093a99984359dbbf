"""The MLflow model registry of ``abalone-age`` and model downloads (DESIGN §6).

Every call names its store (``MlflowClient(tracking_uri=…)``, ``tracking_uri=`` on downloads); where
MLflow only reads its process-wide URIs, :func:`~jobs.adapters.tracking_store.using_tracking_uri`
scopes them to the call. Aliases: ``@challenger`` (latest trained), ``@champion`` (served),
``@previous`` (the champion before); stages are not used. Each promoted version records the one it
replaced (``champion.replaced``), so :meth:`Registry.rollback` walks back one step at a time.
Promotion and rollback are crash-safe (intent first, repair after a crash):
:mod:`jobs.adapters.tracking_promotion`.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import mlflow.artifacts
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from jobs.adapters.settings import Settings, scoped_environ
from jobs.adapters.tracking_promotion import INTENT_TAG, CrashSafePromotion
from jobs.adapters.tracking_store import (
    artifact_location,
    check_tracking,
    ensure_experiment,
    first_line,
    fluent_run,
    parse_models_uri,
    using_tracking_uri,
)
from jobs.core.errors import ServiceError, UsageError
from jobs.core.policy import CHALLENGER, CHAMPION, MODEL_NAME, PREVIOUS

log = logging.getLogger(__name__)

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "INTENT_TAG",
    "PREVIOUS",
    "Aliases",
    "Registry",
    "artifact_location",
    "check_tracking",
    "ensure_experiment",
    "fluent_run",
    "parse_models_uri",
]


# ---- registry -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Aliases:
    champion: str | None
    previous: str | None
    challenger: str | None


class Registry(CrashSafePromotion):
    """Registry operations for one registered model (default ``abalone-age``)."""

    def __init__(self, tracking_uri: str, name: str = MODEL_NAME, client: Any = None) -> None:

        self.tracking_uri = tracking_uri
        self.name = name
        self.client = client or MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    @classmethod
    def from_settings(cls, settings: Settings) -> Registry:
        return cls(settings.tracking_uri)

    # -- plumbing
    def _call(self, what: str, fn, *args, **kwargs):

        try:
            return fn(*args, **kwargs)
        except MlflowException as err:
            code = getattr(err, "error_code", "")
            msg = str(err).strip().splitlines()[0][:300] if str(err).strip() else code
            if code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
                raise UsageError(f"{what}: {msg}") from err
            raise ServiceError(f"MLflow {what} failed: {msg}") from err

    # -- versions
    def register(
        self,
        model_uri: str,
        *,
        run_id: str | None,
        model_id: str | None = None,
        tags: dict[str, str] | None = None,
        wait_s: float = 300.0,
    ) -> str:
        """Create a new version from a logged model and wait until it is READY; returns the version."""

        if model_id is None and model_uri.startswith("models:/m-"):  # a logged model's URI
            model_id = model_uri.removeprefix("models:/")
        try:
            self.client.create_registered_model(self.name)
        except MlflowException as err:
            if err.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                raise ServiceError(
                    f"MLflow cannot create registered model {self.name}: {err}"
                ) from err
        with using_tracking_uri(self.tracking_uri):
            mv = self._call(
                f"register {model_uri}",
                self.client.create_model_version,
                self.name,
                source=model_uri,
                run_id=run_id,
                tags=tags or {},
                model_id=model_id,
                await_creation_for=int(wait_s),
            )
        version = str(mv.version)
        deadline = time.monotonic() + wait_s
        while True:
            mv = self.version(version)
            status = str(mv.status)
            if status == "READY":
                return version
            if status == "FAILED_REGISTRATION" or time.monotonic() > deadline:
                raise ServiceError(f"{self.name} version {version} did not become READY ({status})")
            time.sleep(0.5)

    def version(self, version: str | int):
        return self._call(
            f"no version {version} of {self.name}",
            self.client.get_model_version,
            self.name,
            str(version),
        )

    def delete_version(self, version: str | int) -> None:
        self._call(
            f"delete version {version}", self.client.delete_model_version, self.name, str(version)
        )

    def latest_version(self) -> str | None:

        try:
            found = self.client.search_model_versions(f"name='{self.name}'")
        except MlflowException as err:
            raise ServiceError(f"MLflow search of {self.name} versions failed: {err}") from err
        return max((str(v.version) for v in found), key=int, default=None)

    def tags(self, version: str | int) -> dict[str, str]:
        return dict(self.version(version).tags or {})

    def set_tags(self, version: str | int, tags: dict[str, Any]) -> None:
        for key, value in tags.items():
            self._call(
                f"set tag {key} on version {version}",
                self.client.set_model_version_tag,
                self.name,
                str(version),
                key,
                str(value),
            )

    # -- aliases
    def alias(self, alias: str) -> str | None:
        """The version an alias points at, or ``None`` if the alias (or the model) does not exist."""

        try:
            return str(self.client.get_model_version_by_alias(self.name, alias).version)
        except MlflowException as err:
            if err.error_code in (
                "RESOURCE_DOES_NOT_EXIST",
                "INVALID_PARAMETER_VALUE",
                "NOT_FOUND",
            ):
                return None
            raise ServiceError(f"MLflow lookup of @{alias} failed: {err}") from err

    def aliases(self) -> Aliases:
        return Aliases(self.alias(CHAMPION), self.alias(PREVIOUS), self.alias(CHALLENGER))

    def set_alias(self, alias: str, version: str | int) -> None:
        self._call(
            f"set @{alias} -> {version}",
            self.client.set_registered_model_alias,
            self.name,
            alias,
            str(version),
        )

    def delete_alias(self, alias: str) -> None:
        if self.alias(alias) is not None:
            self._call(
                f"delete @{alias}", self.client.delete_registered_model_alias, self.name, alias
            )

    # -- people and promotion
    def approve(self, version: str | int, by: str) -> None:
        """Record a person's approval (gate rule 5): ``approval=approved``, ``approved_by``, ``approved_at``."""
        by = (by or "").strip()
        if not by:
            raise UsageError("approval needs a name: --by NAME")
        self.version(version)  # clear error for an unknown version
        self.set_tags(
            version,
            {"approval": "approved", "approved_by": by, "approved_at": _now()},
        )

    def _exists(self, version: str) -> bool:
        try:
            self.version(version)
        except UsageError:
            return False
        return True

    def model_uri(self, version: str | int) -> str:
        return f"models:/{self.name}/{version}"

    def load_model(self, version: str | int):
        """The scikit-learn Pipeline of a registered version (``models:/<name>/<version>``)."""
        # lazy: the sklearn flavour imports scikit-learn, only needed when a model loads
        import mlflow.sklearn

        with tempfile.TemporaryDirectory(prefix="abalone-model-") as tmp:
            local = self.download(self.model_uri(version), Path(tmp))
            try:
                return mlflow.sklearn.load_model(str(local))
            except (MlflowException, OSError) as err:
                raise ServiceError(
                    f"cannot load {self.model_uri(version)}: {first_line(err)}"
                ) from err

    def download(self, uri: str, target: Path) -> Path:
        """Download ``models:/…``/``runs:/…``/artifact URI ``uri`` into ``target``; its local path."""
        try:  # models:/ URIs resolve through the process-wide URIs: scope them to this store
            with (
                scoped_environ(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false"),
                using_tracking_uri(self.tracking_uri),
            ):
                return Path(
                    mlflow.artifacts.download_artifacts(
                        artifact_uri=uri,
                        dst_path=str(target),
                        tracking_uri=self.tracking_uri,
                        registry_uri=self.tracking_uri,
                    )
                )
        except MlflowException as err:
            raise UsageError(f"cannot download {uri}: {first_line(err)}") from err
        except OSError as err:
            raise ServiceError(f"cannot download {uri}: {err}") from err

    def download_run_artifact(self, run_id: str, path: str, target: Path) -> Path | None:
        """A run's artifact ``path`` downloaded into ``target``, or ``None`` when it has none."""
        try:
            with scoped_environ(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false"):
                return Path(
                    mlflow.artifacts.download_artifacts(
                        run_id=run_id,
                        artifact_path=path,
                        dst_path=str(target),
                        tracking_uri=self.tracking_uri,
                    )
                )
        except (MlflowException, OSError) as err:
            log.info("run %s has no artifact %s (%s)", run_id, path, first_line(err))
            return None

    def download_model_dir(self, version: str | int, target: Path) -> Path:
        """What the version serves: its run's SageMaker model directory (artifact ``model_dir``,
        what ``jobs/train.py`` wrote to ``SM_MODEL_DIR``), else its registered MLflow model."""
        run_id = self.version(version).run_id
        if run_id:
            found = self.download_run_artifact(run_id, "model_dir", target / "sagemaker")
            if found is not None:
                return found
        return self.download(self.model_uri(version), target / "mlflow")

    def version_of_run(self, run_id: str) -> str | None:
        """The newest version registered from ``run_id``."""
        found = self._call(
            f"search versions of run {run_id}",
            self.client.search_model_versions,
            f"name='{self.name}' and run_id='{run_id}'",
        )
        return str(max(int(v.version) for v in found)) if found else None

    def test_rmse(self, version: str | int) -> float:
        """The test RMSE logged for a version (its tag, else its run's metric)."""
        tags = self.tags(version)
        if "test_rmse" in tags:
            return float(tags["test_rmse"])
        run_id = self.version(version).run_id
        metrics = self._call("get run", self.client.get_run, run_id).data.metrics
        if "test_rmse" not in metrics:
            raise UsageError(f"version {version} has no logged test_rmse")
        return float(metrics["test_rmse"])


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
