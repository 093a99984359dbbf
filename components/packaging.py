"""Locate and package the code that runs on AWS (``jobs/`` + ``validation/``).

The components import nothing from ``jobs/`` at run time; this module only finds files to upload:

- :func:`code_archive` — a Pulumi ``AssetArchive`` of the ``jobs`` and ``validation`` packages
  (explicit file list: no ``__pycache__``, stable across runs). Pulumi zips it for the Glue job's
  ``--extra-py-files``.
- :func:`build_sourcedir` — the SageMaker script-mode ``sourcedir.tar.gz`` (SageMaker needs a
  gzipped tar, which Pulumi archives are not): both packages plus the top-level shims ``train.py``
  (runs ``python -m jobs.train``) and ``inference.py`` (re-exports ``jobs.inference``'s handler
  functions) and a ``requirements.txt`` the scikit-learn container installs. Byte-for-byte
  reproducible (sorted entries, zero mtimes), so an unchanged tree never causes a diff.
- :func:`runtime_constraints` — ``name==version`` pins of the model runtime (scikit-learn, numpy,
  pandas, cloudpickle, …) taken from the environment that deploys (the one the tests and local
  training use). The same pins go into the SageMaker ``requirements.txt`` and, as the build
  argument ``MODEL_RUNTIME_PINS`` (:func:`lambda_build_args`), into the Lambda image, so a model
  pickled by the training job unpickles with the same versions in the gate/promote functions and
  the endpoints.
- :func:`lambda_image_tag` — the content address of the Lambda image: a digest of every file of
  its build context (the Dockerfile's ignore file keeps only ``jobs/``, ``validation/`` and the
  requirements) and of the build arguments.
- :func:`reproducible_targz` — the one writer of ``.tar.gz`` files (sourcedir, seed model).

Python version on SageMaker: ``jobs/`` needs Python ≥ 3.11 (``datetime.UTC``; pandas 3 and numpy
2.3+ need 3.11 too). The scikit-learn framework images ``1.2-1`` (Python 3.9), ``1.4-2`` and
``1.5-2`` (Python 3.10) cannot import ``jobs``; ``1.4-2-py312`` runs Python 3.12
(aws/sagemaker-scikit-learn-container ``docker/1.4-2-py312``; its pip is configured with
``break-system-packages``), so the stacks use ``sagemaker-scikit-learn:1.4-2-py312-cpu-py3`` of
their region (:mod:`components.framework_image`) for training and serving, and the ``requirements.txt`` below upgrades its scikit-learn 1.4.2 / numpy
2.1 to the pinned versions. Not verified on AWS here; the fallback is a custom image
(config ``trainingImageUri``/``inferenceImageUri``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pulumi

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("jobs", "validation")
#: The files the AWS stack runs; packaging fails naming any that is missing.
ENTRY_POINTS = (
    "jobs/aws/glue_ingest.py",
    "jobs/aws/handlers.py",
    "jobs/train.py",
    "jobs/inference.py",
    "validation/__init__.py",
    "validation/suite.py",
)
GLUE_SCRIPT = "jobs/aws/glue_ingest.py"
_SUFFIXES = {".py", ".json", ".yml", ".yaml", ".txt", ".html", ".j2", ".csv"}
#: The model runtime: pinned to the deploying environment's versions (``name==version``), with the
#: lower bound used when a package is not installed there.
MODEL_RUNTIME = {
    "scikit-learn": ">=1.5",
    "numpy": ">=1.26",
    "pandas": ">=2.2",
    "scipy": ">=1.11",
    "joblib": ">=1.3",
    "cloudpickle": ">=3",
    "threadpoolctl": ">=3.1",
}
#: Also needed by jobs/train.py (and what it imports) in the training container: MLflow client and
#: SageMaker auth plugin (tracking server ARN), settings/events, plots, the tracking health check.
#: ``jobs/inference.py`` needs only the model runtime (+ MLflow for MLflow model directories).
TRAINING_EXTRAS = (
    "mlflow-skinny>=3.1,<4",
    "sagemaker-mlflow>=0.1",
    "pydantic>=2.7",
    "pydantic-settings>=2.3",
    "matplotlib>=3.8",
    "httpx>=0.27",
    "boto3>=1.35",
)
LAMBDA_DOCKERFILE = Path("components/lambda_image/Dockerfile")
LAMBDA_REQUIREMENTS = Path("components/lambda-requirements.txt")
TRAIN_SHIM = (
    '"""SageMaker script-mode entry: run ``python -m jobs.train`` with the same argv."""\n'
    "import runpy\n\n"
    'runpy.run_module("jobs.train", run_name="__main__", alter_sys=True)\n'
)
INFERENCE_SHIM = (
    '"""SageMaker serving entry: the handler functions of ``jobs.inference``."""\n'
    "from jobs.inference import input_fn, model_fn, output_fn, predict_fn\n\n"
    '__all__ = ["input_fn", "model_fn", "output_fn", "predict_fn"]\n'
)


class PackagingError(FileNotFoundError):
    """A file the AWS stack runs is missing from the working tree."""


def runtime_constraints() -> list[str]:
    """``name==version`` of each :data:`MODEL_RUNTIME` package installed here (else its range)."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for name, fallback in MODEL_RUNTIME.items():
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pins.append(f"{name}{fallback}")
    return pins


def container_requirements() -> str:
    """The ``requirements.txt`` SageMaker script mode installs before train.py / inference.py."""
    return "\n".join([*runtime_constraints(), *TRAINING_EXTRAS]) + "\n"


def lambda_build_args() -> dict[str, str]:
    """Build arguments of the Lambda image: the model-runtime pins (space-separated)."""
    return {"MODEL_RUNTIME_PINS": " ".join(runtime_constraints())}


def tree_files(root: Path = REPO_ROOT) -> list[str]:
    """Every file of ``jobs/`` and ``validation/`` but Python caches, relative and sorted: what
    the Lambda image copies and what the seed model depends on."""
    return sorted(
        path.relative_to(root).as_posix()
        for package in PACKAGES
        for path in (root / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )


def lambda_context_files(root: Path = REPO_ROOT) -> list[str]:
    """The files of the Lambda image's build context (what ``Dockerfile.dockerignore`` keeps),
    plus the Dockerfile and its ignore file, relative and sorted."""
    inputs = [
        LAMBDA_DOCKERFILE.as_posix(),
        f"{LAMBDA_DOCKERFILE.as_posix()}.dockerignore",
        LAMBDA_REQUIREMENTS.as_posix(),
    ]
    missing = [rel for rel in inputs if not (root / rel).is_file()]
    if missing:
        raise PackagingError(f"missing Lambda image input(s): {', '.join(missing)}")
    return sorted([*inputs, *tree_files(root)])


def lambda_image_tag(root: Path = REPO_ROOT) -> str:
    """``src-<16 hex>``: sha256 over each context file's path, mode and bytes, and the build
    arguments. The mode counts because the image builder's own change detection hashes it too:
    whenever that rebuilds, the tag is new, so a push never meets an immutable tag it already
    used."""
    digest = hashlib.sha256()
    for rel in lambda_context_files(root):
        path = root / rel
        digest.update(f"{rel}\0{path.stat().st_mode:o}\0".encode())
        digest.update(path.read_bytes())
    digest.update(json.dumps(lambda_build_args(), sort_keys=True).encode())
    return f"src-{digest.hexdigest()[:16]}"


def check_entry_points(root: Path = REPO_ROOT) -> None:
    missing = [rel for rel in ENTRY_POINTS if not (root / rel).is_file()]
    if missing:
        raise PackagingError(f"missing entry point(s) to package: {', '.join(missing)}")


def package_files(root: Path = REPO_ROOT) -> list[str]:
    """Relative paths (posix) of every packaged file of ``jobs/`` and ``validation/``, sorted."""
    check_entry_points(root)
    files: list[str] = []
    for package in PACKAGES:
        for path in (root / package).rglob("*"):
            if "__pycache__" in path.parts or not path.is_file():
                continue
            if path.suffix in _SUFFIXES:
                files.append(path.relative_to(root).as_posix())
    return sorted(files)


def code_archive(root: Path = REPO_ROOT):
    """The ``jobs`` + ``validation`` packages as a Pulumi ``AssetArchive`` (zip on upload)."""
    import pulumi

    return pulumi.AssetArchive(
        {rel: pulumi.FileAsset(str(root / rel)) for rel in package_files(root)}
    )


def reproducible_targz(members: Iterable[tuple[str, bytes]]) -> bytes:
    """``(name, bytes)`` members as a ``.tar.gz`` that depends on nothing else: sorted entries,
    mode 0644, zero mtimes and owners, gzip header without name or time."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(members):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as gz:
        gz.write(buffer.getvalue())
    return out.getvalue()


def sourcedir_members(root: Path = REPO_ROOT) -> Iterable[tuple[str, bytes]]:
    for rel in package_files(root):
        yield rel, (root / rel).read_bytes()
    yield "train.py", TRAIN_SHIM.encode()
    yield "inference.py", INFERENCE_SHIM.encode()
    yield "requirements.txt", container_requirements().encode()


def build_sourcedir(out_dir: Path, root: Path = REPO_ROOT) -> Path:
    """Write ``sourcedir.tar.gz`` into ``out_dir`` (reproducibly) and return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "sourcedir.tar.gz"
    target.write_bytes(reproducible_targz(sourcedir_members(root)))
    return target


@dataclass(frozen=True)
class ProgramAssets:
    """The files a deployment uploads, as Pulumi assets/archives (built once per program run)."""

    code: pulumi.Archive  # jobs/ + validation/ (Glue --extra-py-files)
    sourcedir: pulumi.Asset  # SageMaker script-mode sourcedir.tar.gz
    glue_script: pulumi.Asset  # jobs/aws/glue_ingest.py
    seed_model: pulumi.Asset  # model.tar.gz the endpoints start with


def program_assets(
    seed_model: Path, *, root: Path = REPO_ROOT, build_dir: Path | None = None
) -> ProgramAssets:
    """Package the code (writes ``<build_dir>/sourcedir.tar.gz``) and point at the seed model."""
    import pulumi

    build_dir = build_dir or root / "build"
    if not seed_model.is_file():
        raise PackagingError(f"seed model {seed_model} does not exist")
    return ProgramAssets(
        code=code_archive(root),
        sourcedir=pulumi.FileAsset(str(build_sourcedir(build_dir, root))),
        glue_script=pulumi.FileAsset(str(root / GLUE_SCRIPT)),
        seed_model=pulumi.FileAsset(str(seed_model)),
    )
