"""SageMaker inference entry named by the AWS stack: the container imports the four handler
functions from here. They live in :mod:`jobs.serving.handlers`."""

from jobs.serving.handlers import input_fn, model_fn, output_fn, predict_fn

__all__ = ["input_fn", "model_fn", "output_fn", "predict_fn"]
