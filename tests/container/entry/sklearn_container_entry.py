"""The image's two entry functions, for the container test (runs inside the container venv).

The scikit-learn image sets ``SAGEMAKER_SERVING_MODULE=sagemaker_sklearn_container.serving:main``
and ``SAGEMAKER_TRAINING_MODULE=sagemaker_sklearn_container.training:main``. That package
(aws/sagemaker-scikit-learn-container, ``src/sagemaker_sklearn_container``) is not published on
PyPI, so its two functions are rewritten here with the same rules; everything they call is the
real, pinned PyPI package (``sagemaker_containers`` for serving, ``sagemaker_training`` for
training):

- serving (single-model mode, the default): on the first request, import the user module
  (``SAGEMAKER_PROGRAM``), build a ``sagemaker_containers`` ``Transformer`` from its
  ``model_fn`` and either ``transform_fn`` or ``input_fn``/``predict_fn``/``output_fn`` (the
  container's own defaults for missing ones; both kinds at once is a ``UserError``), load the
  model, and answer through ``sagemaker_containers``' ``Worker`` (Flask);
- training: ``sagemaker_training.entry_point.run`` on the training environment, as a process.

Nothing from the project is imported here.
"""

from __future__ import annotations

import importlib

import numpy as np
from sagemaker_containers.beta.framework import (
    content_types,
    encoders,
    env,
    modules,
    transformer,
    worker,
)


class UserError(Exception):
    """sagemaker_sklearn_container.exceptions.UserError (a mis-configured user module)."""


def _default_input_fn(input_data, content_type):
    array = encoders.decode(input_data, content_type)
    return array.astype(np.float32) if content_type in content_types.UTF8_TYPES else array


def _default_predict_fn(input_data, model):
    return model.predict(input_data)


def _default_output_fn(prediction, accept):
    return worker.Response(encoders.encode(prediction, accept), accept, mimetype=accept)


def _user_module_transformer(user_module) -> transformer.Transformer:
    model_fn = getattr(user_module, "model_fn", transformer.default_model_fn)
    input_fn = getattr(user_module, "input_fn", None)
    predict_fn = getattr(user_module, "predict_fn", None)
    output_fn = getattr(user_module, "output_fn", None)
    transform_fn = getattr(user_module, "transform_fn", None)
    if transform_fn and (input_fn or predict_fn or output_fn):
        raise UserError(
            "Cannot use transform_fn implementation with input_fn, predict_fn, and/or output_fn"
        )
    if transform_fn is not None:
        return transformer.Transformer(model_fn=model_fn, transform_fn=transform_fn)
    return transformer.Transformer(
        model_fn=model_fn,
        input_fn=input_fn or _default_input_fn,
        predict_fn=predict_fn or _default_predict_fn,
        output_fn=output_fn or _default_output_fn,
    )


def _import_module(module_name, module_dir):
    try:  # installed by the server's start step: import it
        user_module = importlib.import_module(module_name)
    except ImportError:  # else download and install it, as the container does
        user_module = modules.import_module(module_dir, module_name)
    user_transformer = _user_module_transformer(user_module)
    user_transformer.initialize()
    return user_transformer, getattr(user_module, "execution_parameters_fn", None)


_app = None


def serving_main(environ, start_response):
    """The WSGI application gunicorn serves (``serving.main``)."""
    global _app
    if _app is None:
        serving_env = env.ServingEnv()
        user_transformer, execution_parameters_fn = _import_module(
            serving_env.module_name, serving_env.module_dir
        )
        _app = worker.Worker(
            transform_fn=user_transformer.transform,
            module_name=serving_env.module_name,
            execution_parameters_fn=execution_parameters_fn,
        )
    return _app(environ, start_response)


def training_main():
    """``training.main``: run the user entry point with the training environment."""
    from sagemaker_training import entry_point, environment, runner

    training_env = environment.Environment()
    entry_point.run(
        uri=training_env.module_dir,
        user_entry_point=training_env.user_entry_point,
        args=training_env.to_cmd_args(),
        env_vars=training_env.to_env_vars(),
        runner_type=runner.ProcessRunnerType,
    )
