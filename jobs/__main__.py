"""``python -m jobs`` runs the ``abalone`` CLI."""

from jobs.cli import app

app()
