"""AWS entry points, thin over the same services as the CLI (DESIGN §8): :mod:`jobs.aws.glue_ingest`
(the Glue job script), :mod:`jobs.aws.handlers` (the state machine's Lambda handlers; events in
:mod:`jobs.aws.events`) and :mod:`jobs.aws.launcher` (start and follow a stack's pipeline; with
:mod:`jobs.aws.executions` and :mod:`jobs.aws.reports`). No I/O at import time.
"""
