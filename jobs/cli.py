"""The ``abalone`` command line (Typer + rich). Thin edge: parse flags, load settings, call the core,
print a summary. Exit codes: 0 ok, 1 rejected (validation, gate), 2 usage/config/source/service error.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console

from jobs.errors import AbaloneError

app = typer.Typer(
    name="abalone",
    help="abalone-mlops: validated ingest, MLflow-gated training, serving and drift monitoring.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out = Console()

EnvOption = Annotated[str, typer.Option("--env", help="Stack whose thresholds apply: dev or prd.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")]


def _quiet_libraries() -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("mlflow.tracking.request_header.registry", "great_expectations", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn expected failures into one clear line on stderr and the matching exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _quiet_libraries()
        try:
            return fn(*args, **kwargs)
        except AbaloneError as err:
            console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
            raise typer.Exit(err.exit_code) from None
        except KeyboardInterrupt:
            console.print("[bold red]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


def _settings(env: str):
    from jobs.settings import load_settings

    return load_settings(env)  # type: ignore[arg-type]


# ---- commands -------------------------------------------------------------------------------------
