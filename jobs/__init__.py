"""abalone-mlops: the pipeline jobs that run locally or on AWS (DESIGN §2)."""

__version__ = "0.1.0"
