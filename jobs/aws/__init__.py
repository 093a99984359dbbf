"""Thin AWS entry points over the same core code (DESIGN §8).

- :mod:`jobs.aws.glue_ingest`: the Glue job script (validate + prepare).
- :mod:`jobs.aws.handlers`: the Lambda handlers of the state machine (gate, system test, approval,
  promote).
- :mod:`jobs.aws.launcher`: what the CLI uses to start, follow and inspect a stack's pipeline.

Nothing here does I/O at import time; boto3 clients are created inside the functions that need them.
"""
