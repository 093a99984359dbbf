"""SageMaker inference entry named by the AWS stack: the code package's ``inference.py`` imports
``model_fn`` and ``transform_fn`` from here. The handlers live in :mod:`jobs.serving.handlers`."""

from jobs.serving.handlers import input_fn, model_fn, output_fn, predict_fn, transform_fn

__all__ = ["input_fn", "model_fn", "output_fn", "predict_fn", "transform_fn"]
