"""The Typer app and what every command shares: options, settings, error handling (one line on
stderr and the exit code: 0 ok, 1 rejected, 2 usage/config/source/service error or a bug), JSON
output."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

import click
import typer
from rich.console import Console

from jobs.adapters.settings import Settings, load_settings
from jobs.adapters.storage import private_umask
from jobs.cli.logs import configure_logging, log_file_path, state
from jobs.core.errors import AbaloneError
from jobs.core.redact import redact

app = typer.Typer(
    name="abalone",
    help="abalone-mlops: validated ingest, MLflow-gated training, serving and drift monitoring.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True, soft_wrap=True)  # never cut paths or messages
out = Console()

EnvOption = Annotated[str, typer.Option("--env", help="Stack whose thresholds apply: dev or prd.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")]


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn expected failures into one clear line on stderr and the matching exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        private_umask()  # files 0640, directories 0750, whatever the user's umask
        configure_logging()
        try:
            return fn(*args, **kwargs)
        except AbaloneError as err:
            message = redact(str(err))  # no URL credentials on the terminal
            console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
            raise typer.Exit(err.exit_code) from None
        except KeyboardInterrupt:
            console.print("[bold red]interrupted[/]")
            raise typer.Exit(130) from None
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise  # a command's own exit code (e.g. monitor's 1 = drift) or a usage error
        except Exception as err:
            # A bug must not borrow a command's exit codes (1 means "drift" or "rejected"): one
            # line and exit 2; the traceback goes to the log file (and the terminal with -v).
            logging.getLogger("abalone.internal").error("unexpected error", exc_info=True)
            console.print(
                f"[bold red]error:[/] unexpected {type(err).__name__}: {redact(str(err))} "
                f"(a bug: the traceback is in {log_file_path()}; `abalone -v …` shows it here)",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(2) from None

    return wrapper


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(redact(payload), indent=2, default=str) + "\n")


def show(payload: Any, as_json: bool, human: Callable[[Any], None]) -> None:
    """The JSON payload on stdout with --json, else the human summary on stderr."""
    if as_json:
        print_json(payload)
    else:
        human(redact(payload))


def settings_for(env: str) -> Settings:
    return load_settings(env)


def _print_version(value: bool) -> None:
    if value:
        try:
            out.print(f"abalone-mlops {version('abalone-mlops')}", highlight=False)
        except PackageNotFoundError:
            out.print("abalone-mlops (not installed: run `pip install -e .`)", highlight=False)
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Also show the libraries' log lines (always in the log file)."
        ),
    ] = False,
    version: Annotated[
        bool | None,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = None,
) -> None:
    """abalone-mlops: validated ingest, MLflow-gated training, serving and drift monitoring.

    Library log lines go to $ABALONE_HOME/logs/abalone.log (add -v to see them here too).
    """
    state["verbose"] = verbose


SourceOption = Annotated[
    str | None,
    typer.Option(
        "--source",
        "-s",
        help="Batch to ingest: a local path, http(s):// URL, s3:// URI, or `uci` (download the "
        "original UCI file). Default: the UCI abalone file shipped in the package (no network).",
    ),
]


StackOption = Annotated[
    str,
    typer.Option("--stack", help="Deployed stack; resources come from /abalone/<stack>/ in SSM."),
]
_POLL_STATES = ("WaitFor", "Get", "Check", "Is", "Count")
