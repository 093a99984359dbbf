"""MLflow tracking and model-registry operations for ``abalone-age`` (DESIGN §6).

Aliases: ``@challenger`` (the latest trained version), ``@champion`` (what is served) and
``@previous`` (the champion before it). Stages are not used.

Promotion moves ``@previous`` first and ``@champion`` second, so an interruption in between leaves
``@champion`` on the old, complete version. Each promoted version records the version it replaced
(tag ``champion.replaced``), so :meth:`Registry.rollback` can walk back more than one step: it points
``@champion`` at ``@previous``, then ``@previous`` at the version the restored one had replaced (or
removes ``@previous`` when there is none). The version rolled back from keeps its tags and gets
``rolled_back_at``; it is not re-aliased, so a second rollback never re-instates it by accident.

:func:`evaluate_gate` gathers the gate inputs (re-scores the current champion on the candidate's
test rows, paired bootstrap), calls the pure :func:`jobs.gate.decide`, writes the decision as
version tags and promotes on pass.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pandas as pd

from jobs.errors import ServiceError, StorageError, UsageError
from jobs.gate import ChampionComparison, GateDecision, GateInputs, SystemTestLike, decide
from jobs.schema import COLUMNS, FEATURES, TARGET
from jobs.settings import MODEL_NAME, Settings

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"
N_BOOT = 1000


# ---- tracking store -----------------------------------------------------------------------------


@contextlib.contextmanager
def _fast_fail_http(timeout_s: int = 5) -> Iterator[None]:
    """MLflow's REST client without retries and with a short timeout, for reachability checks."""
    keys = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout_s)}
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(
        uri[len("sqlite:///") :] if uri.startswith("sqlite:////") else uri[len("sqlite://") :]
    )


def check_tracking(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast with one clear line when the tracking store cannot be reached."""
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        import httpx

        url = uri.rstrip("/") + "/health"
        try:
            resp = httpx.get(url, timeout=timeout_s)
        except httpx.HTTPError as err:
            raise ServiceError(
                f"MLflow tracking server {uri} is unreachable ({type(err).__name__}: {err}); "
                "start it or fix MLFLOW_TRACKING_URI"
            ) from err
        if resp.status_code >= 400:
            raise ServiceError(
                f"MLflow tracking server {uri} answered HTTP {resp.status_code} on /health"
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
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        with _fast_fail_http(int(max(1, timeout_s))):
            MlflowClient(tracking_uri=uri, registry_uri=uri).search_experiments(max_results=1)
    except (MlflowException, OSError) as err:
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise ServiceError(f"MLflow tracking store {uri} is unreachable: {first}") from err


def artifact_location(settings: Settings) -> str | None:
    """Where a new experiment keeps artifacts: ``$ABALONE_HOME/mlartifacts/<experiment>`` for a local
    (SQLite/file) store, so ``abalone ui`` can serve them; the server's default otherwise."""
    scheme = urlparse(settings.tracking_uri).scheme
    if scheme in ("sqlite", "file", ""):
        return (settings.home / "mlartifacts" / settings.experiment_name).absolute().as_uri()
    return None


def ensure_experiment(client: Any, settings: Settings) -> str:
    """The id of the stack's experiment, created on first use."""
    from mlflow.exceptions import MlflowException

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


# ---- registry -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Aliases:
    champion: str | None
    previous: str | None
    challenger: str | None


class Registry:
    """Registry operations for one registered model (default ``abalone-age``)."""

    def __init__(self, tracking_uri: str, name: str = MODEL_NAME, client: Any = None) -> None:
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.name = name
        self.client = client or MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    @classmethod
    def from_settings(cls, settings: Settings) -> Registry:
        return cls(settings.tracking_uri)

    # -- plumbing
    def _call(self, what: str, fn, *args, **kwargs):
        from mlflow.exceptions import MlflowException

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
        from mlflow.exceptions import MlflowException

        if model_id is None and model_uri.startswith("models:/m-"):  # a logged model's URI
            model_id = model_uri.removeprefix("models:/")
        try:
            self.client.create_registered_model(self.name)
        except MlflowException as err:
            if err.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                raise ServiceError(
                    f"MLflow cannot create registered model {self.name}: {err}"
                ) from err
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
        from mlflow.exceptions import MlflowException

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
        from mlflow.exceptions import MlflowException

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

    def promote(self, version: str | int) -> Aliases:
        """``@champion`` → ``version``; the old champion → ``@previous`` (set first)."""
        version = str(version)
        self.version(version)
        old = self.alias(CHAMPION)
        if old == version:
            return self.aliases()
        if old is not None:
            self.set_alias(PREVIOUS, old)
            self.set_tags(version, {"champion.replaced": old})
        self.set_alias(CHAMPION, version)
        self.set_tags(version, {"champion.promoted_at": _now()})
        return self.aliases()

    def rollback(self) -> Aliases:
        """``@champion`` → ``@previous``; ``@previous`` → the version the restored one had replaced."""
        target = self.alias(PREVIOUS)
        if target is None:
            raise UsageError(f"no @{PREVIOUS} version of {self.name} to roll back to")
        current = self.alias(CHAMPION)
        self.set_alias(CHAMPION, target)
        if current is not None and current != target:
            self.set_tags(current, {"rolled_back_at": _now(), "rolled_back_to": target})
        before = self.tags(target).get("champion.replaced")
        if before and before not in (target, current) and self._exists(before):
            self.set_alias(PREVIOUS, before)
        else:
            self.delete_alias(PREVIOUS)
        return self.aliases()

    def _exists(self, version: str) -> bool:
        try:
            self.version(version)
        except UsageError:
            return False
        return True

    def model_uri(self, version: str | int) -> str:
        return f"models:/{self.name}/{version}"

    def load_model(self, version: str | int):
        """The scikit-learn Pipeline of a registered version (``models:/<name>/<version>``).

        Resolves the version's storage location through this registry's client and downloads it
        with an explicit tracking URI, so no process-wide MLflow state is changed.
        """
        import mlflow.artifacts
        import mlflow.sklearn
        from mlflow.exceptions import MlflowException

        uri = self.model_uri(version)
        location = self._call(
            f"no version {version} of {self.name}",
            self.client.get_model_version_download_uri,
            self.name,
            str(version),
        )
        try:
            with tempfile.TemporaryDirectory(prefix="abalone-model-") as tmp:
                if urlparse(location).scheme in ("models", "runs"):  # store without direct location
                    mlflow.set_tracking_uri(self.tracking_uri)
                    mlflow.set_registry_uri(self.tracking_uri)
                    location = uri
                local = mlflow.artifacts.download_artifacts(
                    artifact_uri=location, dst_path=tmp, tracking_uri=self.tracking_uri
                )
                return mlflow.sklearn.load_model(local)
        except (MlflowException, OSError) as err:
            raise ServiceError(f"cannot load {uri}: {str(err).splitlines()[0][:300]}") from err


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ---- lake access for re-evaluation ----------------------------------------------------------------


def read_curated(settings: Settings, dataset_version: str, split: str) -> pd.DataFrame:
    """A curated split of a dataset version from the lake (header row, canonical columns)."""
    from jobs.storage import open_store

    key = f"curated/{dataset_version}/{split}.csv"
    try:
        data = open_store(settings.lake).get_bytes(key)
    except StorageError as err:
        raise UsageError(
            f"dataset {dataset_version} has no {split} split in {settings.lake}: {err}"
        ) from err
    return canonical_frame(pd.read_csv(io.BytesIO(data)), f"{settings.lake}/{key}")


def read_manifest(settings: Settings, dataset_version: str) -> dict[str, Any]:
    from jobs.storage import open_store

    store = open_store(settings.lake)
    key = f"curated/{dataset_version}/manifest.json"
    if not store.exists(key):
        return {}
    return json.loads(store.get_bytes(key))


def canonical_frame(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """Check and type a curated split: canonical columns, ``sex`` text, floats, ``rings`` int."""
    from jobs.errors import SourceError

    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise SourceError(f"{where}: missing column(s) {', '.join(missing)}")
    if frame.empty:
        raise SourceError(f"{where}: no rows")
    frame = frame[list(COLUMNS)].copy()
    try:
        for col in FEATURES[1:]:
            frame[col] = frame[col].astype(float)
        frame[TARGET] = frame[TARGET].astype(int)
    except (TypeError, ValueError) as err:
        raise SourceError(f"{where}: non-numeric values ({err})") from err
    frame["sex"] = frame["sex"].astype(object)
    return frame


# ---- system test ----------------------------------------------------------------------------------


def system_test(
    registry: Registry,
    version: str,
    test_frame: pd.DataFrame,
    *,
    expected_rmse: float,
    tolerance: float,
    model_dir: Path | None = None,
) -> SystemTestLike:
    """Gate rule 4 for a registered version: :func:`jobs.systemtest.run_system_test` serves the
    candidate through the real inference server and checks it over HTTP.

    What is served: ``model_dir`` if given (the training job's ``SM_MODEL_DIR``), else the run's
    ``model_dir`` artifact (the SageMaker model directory), else the registered MLflow model itself
    (``model_fn`` loads either layout).
    """
    from jobs.systemtest import run_system_test

    if model_dir is not None:
        return run_system_test(model_dir, test_frame, expected_rmse, tolerance)
    with tempfile.TemporaryDirectory(prefix=f"abalone-v{version}-") as tmp:
        served = _download_model_dir(registry, version, Path(tmp))
        return run_system_test(served, test_frame, expected_rmse, tolerance)


def _download_model_dir(registry: Registry, version: str, target: Path) -> Path:
    """The version's SageMaker model directory (run artifact ``model_dir``), or failing that its
    registered MLflow model directory."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    run_id = registry.version(version).run_id
    if run_id:
        try:
            return Path(
                mlflow.artifacts.download_artifacts(
                    run_id=run_id,
                    artifact_path="model_dir",
                    dst_path=str(target / "sagemaker"),
                    tracking_uri=registry.tracking_uri,
                )
            )
        except (MlflowException, OSError) as err:
            log.info("run %s has no model_dir artifact (%s); serving the MLflow model", run_id, err)
    source = registry._call(
        "locate model", registry.client.get_model_version_download_uri, registry.name, version
    )
    try:
        return Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=source,
                dst_path=str(target / "mlflow"),
                tracking_uri=registry.tracking_uri,
            )
        )
    except (MlflowException, OSError) as err:
        raise ServiceError(
            f"cannot download {registry.name} v{version} from {source}: {err}"
        ) from err


# ---- the gate -----------------------------------------------------------------------------------


def _test_rmse(registry: Registry, version: str) -> float:
    tags = registry.tags(version)
    if "test_rmse" in tags:
        return float(tags["test_rmse"])
    run_id = registry.version(version).run_id
    metrics = registry._call("get run", registry.client.get_run, run_id).data.metrics
    if "test_rmse" not in metrics:
        raise UsageError(f"version {version} has no logged test_rmse")
    return float(metrics["test_rmse"])


def compare_with_champion(
    registry: Registry,
    candidate: str,
    test_frame: pd.DataFrame,
    *,
    seed: int = 0,
    candidate_model: Any = None,
) -> ChampionComparison | None:
    """Re-score the current champion and the candidate on the same rows; paired bootstrap of the
    RMSE difference. ``None`` when there is no champion or the candidate already is it."""
    champion = registry.alias(CHAMPION)
    if champion is None or champion == str(candidate):
        return None
    from jobs.evaluate import paired_bootstrap_rmse_diff, regression_metrics

    X = test_frame[list(FEATURES)]
    y = test_frame[TARGET].to_numpy(dtype=float)
    cand_model = candidate_model if candidate_model is not None else registry.load_model(candidate)
    pred_cand = cand_model.predict(X)
    pred_champ = registry.load_model(champion).predict(X)
    boot = paired_bootstrap_rmse_diff(y, pred_cand, pred_champ, n_boot=N_BOOT, seed=seed)
    return ChampionComparison.from_bootstrap(
        champion_version=champion,
        champion_rmse=regression_metrics(y, pred_champ)["rmse"],
        candidate_rmse=regression_metrics(y, pred_cand)["rmse"],
        bootstrap=boot,
        n_rows=len(y),
    )


def evaluate_gate(
    registry: Registry,
    version: str | int,
    settings: Settings,
    system_test_result: SystemTestLike | None,
    dq_status: str,
    test_frame: pd.DataFrame,
) -> GateDecision:
    """Gather the gate inputs for ``version``, decide, tag the version, and promote on pass."""
    version = str(version)
    tags = registry.tags(version)
    inputs = GateInputs(
        candidate_version=version,
        candidate_test_rmse=_test_rmse(registry, version),
        data_quality=dq_status,
        policy=settings.policy,
        champion=compare_with_champion(registry, version, test_frame, seed=settings.seed),
        system_test=system_test_result,
        approval=tags.get("approval"),
        approved_by=tags.get("approved_by"),
        env=settings.env,
        candidate_is_champion=registry.alias(CHAMPION) == version,
    )
    decision = decide(inputs)
    to_tags = getattr(system_test_result, "to_tags", None)
    extra = to_tags() if callable(to_tags) else {}
    registry.set_tags(version, {**extra, **decision.to_tags()})
    log.info("gate for %s v%s: %s", registry.name, version, decision.decision)
    if decision.passed:
        registry.promote(version)
    return decision


def reevaluate(
    settings: Settings, version: str | int | None = None, *, model_dir: Path | None = None
) -> tuple[GateDecision, Aliases]:
    """Run the gate for a version (default ``@challenger``) from what the registry and the lake
    hold: its dataset's test split and data-quality status, and a fresh system test of the
    SageMaker model directory (``model_dir`` if given, e.g. the training job's ``SM_MODEL_DIR``;
    otherwise the run's ``model_dir`` artifact). Used by ``abalone promote`` and ``abalone run``."""
    check_tracking(settings.tracking_uri)
    registry = Registry.from_settings(settings)
    if version is None:
        version = registry.alias(CHALLENGER)
        if version is None:
            raise UsageError(
                f"no @{CHALLENGER} version of {registry.name}; train one first or pass --version"
            )
    version = str(version)
    tags = registry.tags(version)
    dataset_version = tags.get("dataset_version")
    if not dataset_version:
        raise UsageError(
            f"version {version} has no dataset_version tag; cannot find its test split"
        )
    test_frame = read_curated(settings, dataset_version, "test")
    dq_status = tags.get("data_quality") or read_manifest(settings, dataset_version).get(
        "data_quality", "unknown"
    )
    st = system_test(
        registry,
        version,
        test_frame,
        expected_rmse=_test_rmse(registry, version),
        tolerance=settings.policy.system_test_tolerance,
        model_dir=None if model_dir is None else Path(model_dir),
    )
    decision = evaluate_gate(registry, version, settings, st, dq_status, test_frame)
    return decision, registry.aliases()
