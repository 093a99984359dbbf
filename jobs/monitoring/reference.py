"""The reference profile a monitoring run compares with (``--reference``): the champion's
(``models:/abalone-age@champion``, the run artifact ``reference_profile.json``), another
``models:/name/<version>`` or ``models:/name@alias``, ``runs:/<run_id>``, or a local/S3 JSON file."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from jobs.adapters.settings import Settings
from jobs.adapters.storage import open_store
from jobs.core.errors import SourceError, StorageError, UsageError
from jobs.core.policy import MODEL_NAME
from jobs.core.profile import load_profile, loads_profile

if TYPE_CHECKING:
    from jobs.adapters.tracking import Registry

DEFAULT_REFERENCE = f"models:/{MODEL_NAME}@champion"
PROFILE_ARTIFACTS = ("reference_profile.json", "model_dir/reference_profile.json")


@dataclass(frozen=True)
class Reference:
    profile: dict[str, Any]
    source: str
    model_version: str | None = None
    run_id: str | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "model_version": self.model_version,
            "run_id": self.run_id,
            "n_rows": self.profile.get("n_rows"),
            "created_at": self.profile.get("created_at"),
        }


def _download_profile(registry: Registry, run_id: str, what: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="abalone-profile-") as tmp:
        for artifact in PROFILE_ARTIFACTS:
            local = registry.download_run_artifact(run_id, artifact, Path(tmp))
            if local is not None:
                return load_profile(local)
    raise UsageError(
        f"{what} (run {run_id}) has no reference_profile.json artifact; retrain it with this "
        "version of the pipeline or pass --reference PATH"
    )


def resolve_reference(
    reference: str | None, settings: Settings, s3_client: Any = None
) -> Reference:
    """The reference profile named by ``--reference`` (default: the champion's)."""
    ref = (reference or DEFAULT_REFERENCE).strip()
    if ref.startswith(("models:/", "runs:/")):
        # lazy: MLflow takes about a second to import and a profile file does not need it
        from jobs.adapters.tracking import Registry, check_tracking, parse_models_uri

        check_tracking(settings.tracking_uri)
        if ref.startswith("runs:/"):
            run_id = ref[len("runs:/") :].strip("/").split("/", 1)[0]
            if not run_id:
                raise UsageError(f"--reference {ref!r}: use runs:/<run_id>")
            registry = Registry(settings.tracking_uri)
            return Reference(_download_profile(registry, run_id, ref), ref, None, run_id)
        try:
            name, alias, version = parse_models_uri(ref)
        except UsageError as err:
            raise UsageError(f"--reference {err}") from err
        registry = Registry(settings.tracking_uri, name=name)
        if alias is not None:
            version = registry.alias(alias)
            if version is None:
                raise UsageError(
                    f"no @{alias} version of {name} yet: train and promote a model "
                    "(abalone run) or pass --reference PATH"
                )
        run_id = registry.version(version).run_id
        if not run_id:
            raise UsageError(f"{name} version {version} has no MLflow run")
        profile = _download_profile(registry, run_id, f"{name} version {version}")
        return Reference(profile, ref, str(version), run_id)
    parsed = urlparse(ref)
    if parsed.scheme == "s3":
        parent, _, name = ref.rstrip("/").rpartition("/")
        try:
            data = open_store(parent, s3_client=s3_client).get_bytes(name)
        except StorageError as err:
            raise SourceError(f"reference profile not readable: {err}") from err
        return Reference(loads_profile(data, origin=ref), ref)
    return Reference(load_profile(Path(parsed.path if parsed.scheme == "file" else ref)), ref)
