"""Training entry point in SageMaker script mode (DESIGN §5): the same file runs locally as a
subprocess of ``abalone train`` / ``abalone run`` and as a SageMaker training job.

    python -m jobs.train [--<hyperparameter> VALUE ...] [--dataset-version V] [--ingest-id I]
                         [--data-quality passed] [--report-path URI] [--summary-json URI]

The environment contract is :mod:`jobs.training.contract`; ``MLFLOW_TRACKING_URI`` and
``ABALONE_ENV`` (experiment ``abalone-<env>``) come through the settings loader. An unknown
hyperparameter is a usage error (exit 2).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any, TextIO

from jobs.adapters.settings import default_environ, environment
from jobs.adapters.storage import private_umask
from jobs.core.errors import AbaloneError
from jobs.core.redact import RedactingFilter, redact
from jobs.training.contract import channels_from_env, parse_args, resolve_lineage, write_failure
from jobs.training.fit import train


class _Redacting:
    """A text stream that redacts URL credentials in what is written to it, then passes it on."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class Interrupted(BaseException):
    """SIGINT or SIGTERM to the job (the launcher stopping it, or SageMaker's StopTrainingJob).

    Not a ``KeyboardInterrupt``: scikit-learn's MLP catches that inside ``fit`` ("Training
    interrupted by user") and returns a half-trained model, so a stopped job would go on to log,
    register and move ``@challenger``. This passes through every library to :func:`main`, and the
    MLflow run ends ``FAILED`` on the way."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.exit_code = 128 + signum


def _raise_interrupted(signum: int, _frame: Any) -> None:
    raise Interrupted(signum)


def main(argv: Sequence[str] | None = None) -> int:
    default_environ(
        MLFLOW_DISABLE_TELEMETRY="true",
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="3",
        MLFLOW_HTTP_REQUEST_TIMEOUT="60",
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
    )
    environ = environment()
    private_umask()  # files 0640, directories 0750 (also when run alone, not by the launcher)
    # MLflow writes "View run … at <tracking URI>" straight to stdout: redact what the job prints
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Redacting(sys.stdout), _Redacting(sys.stderr)
    try:
        return _run(argv, environ)
    finally:
        sys.stdout, sys.stderr = streams


def _run(argv: Sequence[str] | None, environ: dict[str, str]) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())
    quiet = ("mlflow.tracking.request_header.registry", "alembic", "mlflow.store.db.utils")
    # mlflow.sklearn warns about cloudpickle; the format is a deliberate choice (DESIGN §5).
    for name in (*quiet, "mlflow.sklearn"):
        logging.getLogger(name).setLevel(logging.ERROR)
    handled = (signal.SIGINT, signal.SIGTERM)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = (
        [signal.signal(signum, _raise_interrupted) for signum in handled] if main_thread else []
    )
    try:
        params, overrides = parse_args(sys.argv[1:] if argv is None else argv)
        channels, model_dir, output_dir = channels_from_env(environ)
        lineage = resolve_lineage(channels, overrides, environ)
        train(channels, model_dir=model_dir, output_dir=output_dir, params=params, lineage=lineage)
    except AbaloneError as err:
        write_failure(err, environ)
        sys.stderr.write(f"error: {err}\n")
        return err.exit_code
    except (Interrupted, KeyboardInterrupt) as err:
        write_failure(err, environ)
        sys.stderr.write(f"error: interrupted ({err or 'SIGINT'})\n")
        return getattr(err, "exit_code", 130)
    finally:  # main() called in-process (tests) leaves the caller's handlers as they were
        for signum, handler in zip(handled, previous, strict=False):
            signal.signal(signum, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
