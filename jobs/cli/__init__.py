"""The ``abalone`` command line (Typer + rich): thin commands over the pipeline's services.

:mod:`jobs.cli.app` holds the app and shared options, :mod:`jobs.cli.render` what is printed; the
commands live in :mod:`jobs.cli.pipeline_commands`, :mod:`jobs.cli.service_commands` and
:mod:`jobs.cli.aws_commands`; importing them registers them, in this (the help's) order.
"""

# isort: skip_file
from jobs.cli import pipeline_commands, service_commands, aws_commands
from jobs.cli.app import app

__all__ = ["app", "aws_commands", "pipeline_commands", "service_commands"]
