"""Where the CLI's log lines go: library chatter (MLflow's INFO lines, alembic, GX, warnings) to
``$ABALONE_HOME/logs/abalone.log``; the terminal shows the steps, the summary and the product's own
warnings (everything with ``-v``). Both handlers redact credentials in URLs (:mod:`jobs.core.redact`)."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

from jobs.adapters.settings import default_environ, load_settings, set_environ
from jobs.core.redact import RedactingFilter

_OWN_LOGGERS = ("jobs", "validation", "components")
LOG_MAX_BYTES = 10 * 1024 * 1024  # rotated when a command starts with the file above this size
LOG_KEEP = 3  # abalone.log.1 … abalone.log.3
state = {"verbose": False}


class _OwnOrVerbose(logging.Filter):
    """On the terminal: the product's own warnings; every library's lines only with --verbose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return state["verbose"] or record.name.split(".", 1)[0] in _OWN_LOGGERS


class _LogFile(logging.FileHandler):
    """``$ABALONE_HOME/logs/abalone.log``, created on the first line written, not before."""

    def _open(self):
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


def log_file_path() -> Path:
    try:
        home = load_settings("dev").home
    except Exception:  # a bad setting is reported by the command itself, one line
        home = Path(".mlops").absolute()
    return home / "logs" / "abalone.log"


def rotate_log(path: Path, max_bytes: int = LOG_MAX_BYTES, keep: int = LOG_KEEP) -> bool:
    """Rotate ``path`` (``.1`` newest … ``.keep`` oldest, the oldest dropped) when it has grown past
    ``max_bytes``. Done once when a command starts, never mid-run, so concurrent commands appending
    to the same file never lose a line to a rotation; ``os.replace`` makes each step atomic."""
    try:
        if path.stat().st_size <= max_bytes:
            return False
    except OSError:  # no log yet, or unreadable: nothing to rotate
        return False
    for n in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{n}")
        if older.exists():
            older.replace(path.with_name(f"{path.name}.{n + 1}"))
    path.replace(path.with_name(f"{path.name}.1"))
    return True


def configure_logging() -> None:
    """The terminal and log-file handlers on the root logger (replacing ours from a previous call)."""
    default_environ(
        MLFLOW_DISABLE_TELEMETRY="true",
        GX_ANALYTICS_ENABLED="false",
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
    )
    # MLflow otherwise installs its own stderr handler on import; route it through ours instead.
    set_environ(MLFLOW_CONFIGURE_LOGGING="false")
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_abalone", False)]:
        root.removeHandler(handler)
        handler.close()
    terminal = logging.StreamHandler(sys.stderr)
    terminal.setLevel(logging.INFO if state["verbose"] else logging.WARNING)
    terminal.addFilter(_OwnOrVerbose())
    terminal.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    log_path = log_file_path()
    with contextlib.suppress(OSError):  # a read-only or racing rotation never stops a command
        rotate_log(log_path)
    to_file = _LogFile(log_path, delay=True, encoding="utf-8")
    to_file.setLevel(logging.INFO)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for handler in (terminal, to_file):
        handler._abalone = True  # type: ignore[attr-defined]
        handler.addFilter(RedactingFilter())  # no URL credentials in any log line
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name in ("mlflow.tracking.request_header.registry", "sqlalchemy.engine", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)  # library warnings (e.g. MLflow's pickle notice) → the log file
