"""SageMaker script-mode entry named by the AWS stack (``python -m jobs.train``); the job itself is
:mod:`jobs.training.script`."""

import sys

from jobs.training.script import main

if __name__ == "__main__":
    sys.exit(main())
