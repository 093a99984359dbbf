"""The SageMaker scikit-learn image's Python stack in a venv, without Docker (DESIGN §7).

The stacks train and serve with ``sagemaker-scikit-learn:1.4-2-py312-cpu-py3``, built from
aws/sagemaker-scikit-learn-container ``docker/1.4-2-py312`` (commit :data:`SOURCE_COMMIT`, the last
one whose ``requirements.txt`` resolves: the later scikit-learn 1.9 bump pins Flask 3 against
sagemaker-containers' ``flask==1.1.1``). :func:`image_venv` replays that image's Python install on
a local Python 3.12: the base stage's pins, the final stage's ``requirements.txt`` (the package's
own ``install_requires``), and the Dockerfile's patches (``collections.Mapping`` in
sagemaker-containers, ``six==1.16.0`` reinstalled, ``allow_pickle=False`` in sagemaker-inference's
NPY decoder). The image's own package, ``sagemaker_sklearn_container``, is not on PyPI; its two
entry functions are reproduced in ``tests/container/entry/sklearn_container_entry.py``.

Then, as the image does when it starts, the code package (``sourcedir.tar.gz`` built by
``components.packaging``, downloaded from S3 — moto here, through the toolkits' own
``S3_ENDPOINT_URL``) is installed with sagemaker-containers' own ``import_module`` (``pip
install . -r requirements.txt``), and :func:`serving_command` is the gunicorn command line of
``sagemaker_containers._server.start`` bound to a loopback port (no nginx).

The venv is cached under ``~/.cache/abalone-container/<digest>`` (``ABALONE_CONTAINER_CACHE``
overrides the root); the digest covers the interpreter, the pins, the patches and the code
package's ``requirements.txt``, so a changed requirement builds a new venv (the two newest are
kept). A build that fails leaves no venv marked complete.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

SOURCE_REPO = "aws/sagemaker-scikit-learn-container"
SOURCE_COMMIT = "a330daf2928060b0f110c5ed6b92ddd19bc9d619"
IMAGE_VERSION = "1.4-2-py312"
#: docker/1.4-2-py312/base/Dockerfile.cpu: ``uv pip install numpy==2.1.0 scikit-learn==1.4.2 ...``
BASE_PINS = ("numpy==2.1.0", "scikit-learn==1.4.2", "pyarrow==17.0.0")
#: requirements.txt at SOURCE_COMMIT (installed by the final stage and declared by the package).
IMAGE_PINS = (
    "numpy==2.1.0",
    "scikit-learn==1.4.2",
    "scipy>=1.9.0",
    "pandas==2.3.2",
    "pyarrow==17.0.0",
    "boto3==1.28.57",
    "botocore>=1.31.57,<1.32.0",
    "certifi",
    "cryptography==46.0.7",
    "Flask==1.1.1",
    "gevent==23.9.1",
    "gunicorn==23.0.0",
    "itsdangerous==2.0.1",
    "jinja2<3.0",
    "MarkupSafe<2.0",
    "model-archiver==1.0.3",
    "multi-model-server==1.1.1",
    "protobuf==3.20.2",
    "psutil==5.7.2",
    "python-dateutil",
    "PyYAML==6.0.1",
    "retrying==1.3.3",
    "sagemaker-containers==2.8.6.post2",
    "sagemaker-inference==1.2.0",
    "sagemaker-training==4.8.0",
    "setuptools==80.9.0",
    "six==1.16.0",
    "urllib3==1.26.17",
    "Werkzeug==2.0.3",
    "wheel==0.45.1",
)
#: The Dockerfile's source patches: (file under site-packages, text, replacement).
PATCHES = (
    ("sagemaker_containers/_mapping.py", "collections.Mapping", "collections.abc.Mapping"),
    (
        "sagemaker_inference/decoder.py",
        "np.load(stream, allow_pickle=True)",
        "np.load(stream, allow_pickle=False)",
    ),
)
#: ENV of docker/1.4-2-py312/final/Dockerfile.cpu (paths under /opt/ml are set per test).
IMAGE_ENV = {
    "SAGEMAKER_SKLEARN_VERSION": IMAGE_VERSION,
    "PIP_ROOT_USER_ACTION": "ignore",
    "SAGEMAKER_TRAINING_MODULE": "sklearn_container_entry:training_main",
    "SAGEMAKER_SERVING_MODULE": "sklearn_container_entry:serving_main",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
    "PYTHONIOENCODING": "UTF-8",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
}
ENTRY_DIR = Path(__file__).resolve().parent / "entry"
RECIPE = "2"  # bump when the build steps below change
KEEP = 2  # cached venvs kept


class ContainerStackError(RuntimeError):
    """A step of the image's install failed; the message carries the step's output."""


def find_python312() -> str | None:
    """A Python 3.12 interpreter: ``ABALONE_CONTAINER_PYTHON``, ``python3.12`` on PATH, or pyenv."""
    candidates = [os.environ.get("ABALONE_CONTAINER_PYTHON", ""), shutil.which("python3.12") or ""]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += sorted(glob.glob(str(pyenv / "versions/3.12.*/bin/python")), reverse=True)
    for candidate in filter(None, candidates):
        try:
            out = subprocess.run(
                [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 12))"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.stdout.strip() == "True":
            return candidate
    return None


def cache_root() -> Path:
    return Path(os.environ.get("ABALONE_CONTAINER_CACHE", Path.home() / ".cache/abalone-container"))


def _run(cmd: list[str], step: str, **kwargs) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        raise ContainerStackError(
            f"{step} failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-4000:]}\n"
            f"{proc.stderr[-4000:]}"
        )
    return proc.stdout


def venv_digest(python: str, code_requirements: str) -> str:
    version = _run([python, "-c", "import sys; print(sys.version)"], "python version")
    doc = json.dumps(
        [RECIPE, version, BASE_PINS, IMAGE_PINS, PATCHES, code_requirements], sort_keys=True
    )
    return hashlib.sha256(doc.encode()).hexdigest()[:16]


@contextlib.contextmanager
def _lock(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # one build at a time across pytest sessions
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def image_venv(python: str, sourcedir: Path) -> tuple[Path, float | None]:
    """The cached venv for this interpreter, these pins and this code package's requirements.

    Returns ``(venv, seconds spent building or None when it was cached)``. A new venv gets the
    image's install, then the code package installed by the container's own install step (so its
    requirements are in place); :func:`install_code_package` repeats that step on every run.
    """
    import tarfile

    with tarfile.open(sourcedir) as tar:
        member = tar.extractfile("requirements.txt")
        requirements = member.read().decode() if member else ""
    root = cache_root()
    venv = root / venv_digest(python, requirements)
    with _lock(root):
        if (venv / ".complete").is_file():
            os.utime(venv / ".complete")
            return venv, None
        shutil.rmtree(venv, ignore_errors=True)
        started = time.monotonic()
        try:
            build_image_venv(python, venv)
            with tempfile.TemporaryDirectory(prefix="abalone-container-") as tmp:
                install_code_package(venv, str(sourcedir), Path(tmp))
        except BaseException:
            shutil.rmtree(venv, ignore_errors=True)  # nothing half-built stays behind
            raise
        (venv / ".complete").write_text(requirements)
        _prune(root, keep=venv)
        return venv, time.monotonic() - started


def _prune(root: Path, keep: Path) -> None:
    done = sorted(
        (p for p in root.iterdir() if (p / ".complete").is_file() and p != keep),
        key=lambda p: (p / ".complete").stat().st_mtime,
        reverse=True,
    )
    for old in done[KEEP - 1 :]:
        shutil.rmtree(old, ignore_errors=True)
    for partial in root.iterdir():
        if partial.is_dir() and not (partial / ".complete").is_file() and partial != keep:
            shutil.rmtree(partial, ignore_errors=True)


def build_image_venv(python: str, venv: Path) -> None:
    """The image's Python install (base stage, final stage, patches), in ``venv``."""
    _run([python, "-m", "venv", str(venv)], "venv")
    pip = [
        str(venv / "bin/python"),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ]
    _run([*pip, "--upgrade", "pip"], "pip upgrade")
    _run([*pip, *BASE_PINS], "base stage pins")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as req:
        req.write("\n".join(IMAGE_PINS) + "\n")
    try:
        _run([*pip, "-r", req.name], "final stage requirements.txt")
    finally:
        os.unlink(req.name)
    site = Path(
        _run(
            [
                str(venv / "bin/python"),
                "-c",
                "import sysconfig; print(sysconfig.get_path('purelib'))",
            ],
            "site",
        ).strip()
    )
    for rel, old, new in PATCHES:
        path = site / rel
        text = path.read_text()
        if old not in text:
            raise ContainerStackError(f"Dockerfile patch does not apply: {old!r} not in {rel}")
        path.write_text(text.replace(old, new))
    _run([*pip, "--upgrade", "--force-reinstall", "six==1.16.0"], "six reinstall")


def container_env(venv: Path, base_dir: Path, **extra: str) -> dict[str, str]:
    """The process environment inside the image: its ENV, the ``/opt/ml`` tree under ``base_dir``
    (``SAGEMAKER_BASE_DIR``), no project venv or PYTHONPATH leaking in."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "VIRTUAL_ENV", "SM_", "SAGEMAKER_", "MLFLOW_", "ABALONE_"))
    }
    env.update(IMAGE_ENV)
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(ENTRY_DIR),
        SAGEMAKER_BASE_DIR=str(base_dir),
        SM_INPUT=str(base_dir / "input"),
        SM_INPUT_TRAINING_CONFIG_FILE=str(base_dir / "input/config/hyperparameters.json"),
        SM_INPUT_DATA_CONFIG_FILE=str(base_dir / "input/config/inputdataconfig.json"),
        SM_CHECKPOINT_CONFIG_FILE=str(base_dir / "input/config/checkpointconfig.json"),
        SM_MODEL_DIR=str(base_dir / "model"),
        TEMP=str(base_dir / "tmp"),
    )
    (base_dir / "tmp").mkdir(parents=True, exist_ok=True)
    env.update(extra)
    return env


def serving_env(venv: Path, base_dir: Path, code_uri: str, **extra: str) -> dict[str, str]:
    """``container_env`` plus what the stack's SageMaker Model sets (components/model_endpoint.py);
    ``code_uri`` is the ``s3://`` URI of the code package (or a local path)."""
    return container_env(
        venv,
        base_dir,
        SAGEMAKER_PROGRAM="inference.py",
        SAGEMAKER_SUBMIT_DIRECTORY=code_uri,
        SAGEMAKER_CONTAINER_LOG_LEVEL="20",
        SAGEMAKER_REGION="us-east-1",
        ABALONE_ENV="dev",
        **extra,
    )


INSTALL_CODE = """
from sagemaker_containers import _env, _modules
env = _env.ServingEnv()
_modules.import_module(env.module_dir, env.module_name)
"""


def remove_code_package(venv: Path, name: str = "inference") -> None:
    """Delete the files an earlier run's code package left in the cached venv.

    The image installs the code package once per container; here the venv outlives it. pip cannot
    uninstall what the image's install step builds (it reports no files: the package data copies
    the build's own ``.egg-info``), so stale modules of an earlier tree would stay importable. The
    files its RECORD lists are removed instead, then the directories left empty.
    """
    for site in venv.glob("lib/python3*/site-packages"):
        for record in site.glob(f"{name}-*.dist-info/RECORD"):
            tops = set()
            for line in record.read_text().splitlines():
                rel = line.split(",", 1)[0]
                if not rel or rel.startswith(("..", "/")):
                    continue
                tops.add(rel.split("/", 1)[0])
                (site / rel).unlink(missing_ok=True)
            for top in tops:
                path = site / top
                if path.is_dir():
                    for sub in sorted(path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                        if sub.is_dir() and not any(sub.iterdir()):
                            sub.rmdir()
                    if not any(path.iterdir()):
                        path.rmdir()
            shutil.rmtree(record.parent, ignore_errors=True)


def install_code_package(venv: Path, code_uri: str, base_dir: Path, **extra: str) -> str:
    """The first step of ``sagemaker_containers._server.start``: download and extract the code
    package into ``<base>/code``, ``pip install . -r requirements.txt``, import the module."""
    remove_code_package(venv)
    env = serving_env(venv, base_dir, code_uri, **extra)
    return _run(
        [str(venv / "bin/python"), "-c", INSTALL_CODE],
        "code package install",
        env=env,
        cwd=base_dir,
    )


def pip_check(venv: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "check"], capture_output=True, text=True
    )


def serving_command(venv: Path, base_dir: Path, port: int, workers: int = 1) -> list[str]:
    """gunicorn as ``sagemaker_containers._server.start`` runs it, bound to 127.0.0.1."""
    python = str(venv / "bin/python")
    sys_path = json.loads(
        _run([python, "-c", "import json, sys; print(json.dumps(sys.path))"], "sys.path")
    )
    pythonpath = ",".join([*sys_path, str(ENTRY_DIR), str(base_dir / "code")])
    return [
        python,
        "-m",
        "gunicorn",
        "--timeout",
        "60",  # ServingEnv.model_server_timeout default
        "-k",
        "gevent",
        "--pythonpath",
        pythonpath,
        "-b",
        f"127.0.0.1:{port}",
        "--worker-connections",
        str(1000 * workers),
        "-w",
        str(workers),
        "--log-level",
        "info",
        IMAGE_ENV["SAGEMAKER_SERVING_MODULE"],
    ]


def versions(venv: Path) -> dict[str, str]:
    """``{normalised name: version}`` of every distribution in the venv."""
    code = (
        "import json, importlib.metadata as m, re\n"
        "print(json.dumps({re.sub(r'[-_.]+', '-', d.metadata['Name']).lower(): d.version "
        "for d in m.distributions()}))"
    )
    return json.loads(_run([str(venv / "bin/python"), "-c", code], "versions"))
