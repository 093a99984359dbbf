"""Gate rule 4 on a registered version that has no SageMaker model directory artifact: the
registered MLflow model itself is served through the real inference server and checked over HTTP."""

from __future__ import annotations

import mlflow
import mlflow.sklearn
import numpy as np

from jobs.adapters.tracking import Registry
from jobs.core.evaluate import regression_metrics
from jobs.core.model import build_model
from jobs.core.schema import FEATURES
from jobs.core.synthetic import make_abalone
from jobs.promotion.service import system_test


def test_mlflow_only_version_is_served_and_checked(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    train, test = make_abalone(400, seed=31), make_abalone(120, seed=32)
    model = build_model({"estimators": "svr"}).fit(train[list(FEATURES)], train["rings"])
    rmse = regression_metrics(test["rings"], model.predict(test[list(FEATURES)]))["rmse"]
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    exp_id = mlflow.create_experiment("st", artifact_location=(tmp_path / "art").as_uri())
    with mlflow.start_run(experiment_id=exp_id):
        mlflow.sklearn.log_model(
            model,
            name="model",
            serialization_format="cloudpickle",
            registered_model_name="abalone-age",
        )
    registry = Registry(uri)
    good = system_test(registry, "1", test, expected_rmse=rmse, tolerance=0.05)
    assert good.passed, good.reasons
    assert np.isclose(good.rmse, rmse, atol=1e-6)
    off = system_test(registry, "1", test, expected_rmse=rmse + 1.0, tolerance=0.05)
    assert not off.passed
    assert any("rmse" in r.lower() for r in off.reasons)
