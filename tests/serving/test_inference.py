"""The SageMaker handler functions, called the way the scikit-learn serving container calls them
(model_fn → input_fn → predict_fn → output_fn), with no HTTP."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import GradientBoostingRegressor, VotingRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MinMaxScaler,
    OneHotEncoder,
    PolynomialFeatures,
    StandardScaler,
)
from sklearn.svm import SVR

from jobs.core.errors import UsageError
from jobs.core.model import build_model
from jobs.core.schema import FEATURES, NUMERIC_FEATURES
from jobs.core.synthetic import make_abalone
from jobs.serving import fastpath, handlers
from jobs.serving.handlers import (
    InvalidInput,
    input_fn,
    model_fn,
    output_fn,
    predict_fn,
    transform_fn,
)

CSV = "text/csv"
JSON = "application/json"


def make_model_dir(path: Path, pipeline=None, n: int = 500, seed: int = 0, **meta) -> Path:
    """A model directory as jobs/train.py writes it: model.joblib + metadata.json."""
    frame = make_abalone(n, seed=seed)
    model = (pipeline if pipeline is not None else build_model()).fit(
        frame[list(FEATURES)], frame["rings"]
    )
    path.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, path / "model.joblib")
    metadata = {"model_name": "abalone-age", "run_id": "r123", "features": list(FEATURES), **meta}
    (path / "metadata.json").write_text(json.dumps(metadata))
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("model"), model_version="4")


@pytest.fixture(scope="module")
def model(model_dir):
    return model_fn(str(model_dir))


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return make_abalone(40, seed=7)


def csv_text(frame: pd.DataFrame, header: bool = False, rings: bool = False) -> str:
    cols = [*FEATURES, "rings"] if rings else list(FEATURES)
    return frame[cols].to_csv(index=False, header=header)


def expected(model, frame: pd.DataFrame) -> np.ndarray:
    return model.pipeline.predict(frame[list(FEATURES)])


def test_sagemaker_call_chain_csv_str_body(model, rows):
    """The container decodes CSV/JSON bodies to str before input_fn; output_fn gives (body, type)."""
    data = input_fn(csv_text(rows), "text/csv; charset=utf-8")
    prediction = predict_fn(data, model)
    body, content_type = output_fn(prediction, "application/json")
    assert content_type == JSON
    doc = json.loads(body)
    assert doc["model_version"] == "4"
    got = np.array([p["rings"] for p in doc["predictions"]])
    np.testing.assert_array_equal(got, expected(model, rows))
    for p in doc["predictions"]:
        assert p["age_years"] == pytest.approx(p["rings"] + 1.5)


def test_sagemaker_call_chain_json_bytes_and_csv_answer(model, rows):
    body = json.dumps({"instances": rows[list(FEATURES)].values.tolist()}).encode()
    out, content_type = output_fn(predict_fn(input_fn(body, JSON), model), "text/csv")
    assert content_type == CSV
    lines = out.strip().splitlines()
    assert len(lines) == len(rows)
    rings = np.array([float(line.split(",")[0]) for line in lines])
    ages = np.array([float(line.split(",")[1]) for line in lines])
    np.testing.assert_array_equal(rings, expected(model, rows))
    np.testing.assert_allclose(ages, rings + 1.5)


def all_formats(frame: pd.DataFrame) -> dict[str, tuple[str, str]]:
    records = frame[list(FEATURES)].to_dict(orient="records")
    lists = frame[list(FEATURES)].values.tolist()
    reordered = [*FEATURES[::-1], "rings"]
    return {
        "csv headerless": (CSV, csv_text(frame)),
        "csv headerless + rings": (CSV, csv_text(frame, rings=True)),
        "csv header": (CSV, csv_text(frame, header=True)),
        "csv header + rings": (CSV, csv_text(frame, header=True, rings=True)),
        "csv header reordered": (CSV, frame[reordered].to_csv(index=False)),
        "csv crlf + blank lines": (CSV, "\r\n".join(csv_text(frame).splitlines()) + "\r\n\r\n"),
        "json instances lists": (JSON, json.dumps({"instances": lists})),
        "json instances lists + rings": (
            JSON,
            json.dumps({"instances": frame[[*FEATURES, "rings"]].values.tolist()}),
        ),
        "json instances records": (JSON, json.dumps({"instances": records})),
        "json bare records": (JSON, json.dumps(records)),
        "json dataframe_split": (
            JSON,
            json.dumps({"dataframe_split": frame[list(FEATURES)].to_dict(orient="split")}),
        ),
        "json dataframe_records": (JSON, json.dumps({"dataframe_records": records})),
        "json inputs": (JSON, json.dumps({"inputs": lists})),
    }


@pytest.mark.parametrize("name", list(all_formats(make_abalone(3, seed=1))))
def test_every_input_format_gives_pipeline_predictions(model, rows, name):
    content_type, body = all_formats(rows)[name]
    got = predict_fn(input_fn(body, content_type), model).rings
    np.testing.assert_array_equal(got, expected(model, rows))


def test_single_row_without_newline_and_quoted_csv(model, rows):
    row = rows.iloc[[0]]
    plain = ",".join(str(v) for v in row[list(FEATURES)].iloc[0])
    quoted = '"' + row["sex"].iloc[0] + '",' + plain.split(",", 1)[1]
    a = predict_fn(input_fn(plain, CSV), model).rings
    b = predict_fn(input_fn(quoted + "\n", CSV), model).rings
    np.testing.assert_array_equal(a, expected(model, row))
    np.testing.assert_array_equal(b, a)


@pytest.mark.parametrize(
    ("content_type", "body", "status", "words"),
    [
        (CSV, "X,0.4,0.3,0.1,0.5,0.2,0.1,0.15", 422, ["row 1", "'sex'"]),
        (CSV, "M,0.4,0.3,0.1,0.5,0.2,0.1,0.15\nF,0.4,0.3", 400, ["row 2", "fields"]),
        (CSV, "M,0.4,0.3,0.1", 400, ["row 1", "8 fields"]),
        (CSV, "M,0.4,0.3,0.1,0.5,0.2,0.1,0.15,9,9", 400, ["row 1", "got 10"]),
        (CSV, "M,0.4,0.3,nan,0.5,0.2,0.1,0.15", 422, ["row 1", "'height'", "'nan'", "spelled"]),
        (CSV, "M,0.4,0.3,0.1,inf,0.2,0.1,0.15", 422, ["'whole_weight'", "'inf'", "spelled"]),
        # the contract's one number grammar (jobs.core.numbers), stricter than float()
        (CSV, "M,0_5,0.3,0.1,0.5,0.2,0.1,0.15", 422, ["'length'", "'0_5'", "underscores"]),
        (CSV, "M,0.4,\u0660.\u0663,0.1,0.5,0.2,0.1,0.15", 422, ["'diameter'", "ARABIC-INDIC"]),
        (CSV, "M,0.4,0.3,\uff10.\uff11,0.5,0.2,0.1,0.15", 422, ["'height'", "FULLWIDTH"]),
        (CSV, "M,0.4,0.3,0.1,0.5,0.2,0.1,0.15,\u0661\u0665", 422, ["'rings'"]),
        (CSV, "M,0.4,0.3,0.1,0.5\u00a0,0.2,0.1,0.15", 422, ["'whole_weight'", "ASCII"]),
        (CSV, "M,0.4,0.3,0.1,0.5,0.2,0.1,0x1", 422, ["'shell_weight'", "not a number"]),
        (CSV, "M,0.4,0.3,0.1,0.5,-0.2,0.1,0.15", 422, ["'shucked_weight'", "range"]),
        (CSV, "M,0.4,0.3,0.1,0.5,0.2,1e300,0.15", 422, ["'viscera_weight'", "range"]),
        (CSV, "M,0.4,0.3,0.1,0.5,0.2,0.1,abc", 422, ["'shell_weight'", "not a number"]),
        (CSV, "M,0.4,0.3,0.1,0.5,0.2,0.1,0.15,-3", 422, ["'rings'"]),
        (CSV, "sex,length\nM,0.4", 400, ["missing column"]),
        (CSV, "sex,lenght,diameter\nM,0.4,0.3", 400, ["unknown column 'lenght'"]),
        (CSV, "sex,length\n", 400, ["missing column"]),
        (CSV, "", 400, ["empty"]),
        (CSV, '"M,0.4', 400, ["row 1"]),
        (JSON, '{"instances": [["M", 0.4]]}', 400, ["row 1", "8 values"]),
        (JSON, '{"instances": [["M",0.4,0.3,0.1,0.5,0.2,0.1,true]]}', 422, ["'shell_weight'"]),
        (JSON, '{"instances": [["M",0.4,0.3,0.1,0.5,0.2,0.1,"0.1"]]}', 422, ["JSON number"]),
        (JSON, '{"instances": [["M",0.4,0.3,0.1,0.5,0.2,0.1,NaN]]}', 422, ["not finite"]),
        (JSON, '{"instances": [["M",0.4,0.3,0.1,0.5,0.2,0.1,1' + "0" * 400 + "]]}", 422, ["row 1"]),
        (JSON, '{"instances": [{"sex": "M"}]}', 400, ["row 1", "missing field"]),
        (JSON, '{"instances": [{"sex": "M", "colour": 1}]}', 400, ["unknown field 'colour'"]),
        (JSON, '{"instances": [[["M"]]]}', 400, ["row 1"]),
        (JSON, '{"instances": [[{"a": 1},0,0,0,0,0,0,0]]}', 422, ["'sex'"]),
        (JSON, '{"instances": [5]}', 400, ["row 1"]),
        (JSON, '{"instances": {}}', 400, ["list"]),
        (JSON, '{"instances": []}', 400, ["no rows"]),
        (JSON, '{"rows": []}', 400, ["instances"]),
        (JSON, '"M,0.4"', 400, ["object or a list"]),
        (JSON, "{bad json", 400, ["malformed JSON"]),
        (JSON, "[" * 100_000, 400, ["malformed JSON"]),
        (JSON, '{"dataframe_split": {"columns": ["sex"], "data": [[1, 2]]}}', 400, ["row 1"]),
        (JSON, '{"dataframe_split": []}', 400, ["dataframe_split"]),
        ("text/html", "<p>", 415, ["unsupported content type"]),
        ("", "M,1", 415, ["none"]),
        ("application/x-npy", "M,1", 415, ["text/csv"]),
    ],
)
def test_bad_inputs_raise_invalid_input_naming_the_problem(content_type, body, status, words):
    with pytest.raises(InvalidInput) as info:
        input_fn(body, content_type)
    assert info.value.status_code == status, info.value.message
    for word in words:
        assert word in info.value.message
    assert isinstance(info.value, UsageError)  # the CLI's one-line error family


def test_error_names_the_failing_row(rows):
    frame = rows.head(5).copy()
    text = csv_text(frame).splitlines()
    text[3] = text[3].replace(text[3].split(",")[0], "Q", 1)
    with pytest.raises(InvalidInput, match=r"row 4, field 'sex'"):
        input_fn("\n".join(text), CSV)


def test_invalid_utf8_is_400():
    with pytest.raises(InvalidInput) as info:
        input_fn(b"M,\xff\xfe,0.3", CSV)
    assert info.value.status_code == 400


def test_row_limit_is_413(monkeypatch):
    monkeypatch.setenv("ABALONE_MAX_ROWS", "3")
    body = "\n".join(["M,0.4,0.3,0.1,0.5,0.2,0.1,0.15"] * 4)
    with pytest.raises(InvalidInput) as info:
        input_fn(body, CSV)
    assert info.value.status_code == 413
    assert len(input_fn("\n".join(["M,0.4,0.3,0.1,0.5,0.2,0.1,0.15"] * 3), CSV)) == 3
    with pytest.raises(InvalidInput) as info:
        input_fn(json.dumps([["M", 0.4, 0.3, 0.1, 0.5, 0.2, 0.1, 0.15]] * 4), JSON)
    assert info.value.status_code == 413


@pytest.mark.parametrize(
    ("accept", "kind"),
    [
        (None, JSON),
        ("", JSON),
        ("*/*", JSON),
        ("application/json", JSON),
        ("text/csv", CSV),
        ("text/csv;q=0.9, application/json;q=0.5", CSV),
        ("text/html, text/csv", CSV),
        ("application/json; charset=utf-8", JSON),
    ],
)
def test_accept_negotiation(model, accept, kind):
    prediction = predict_fn(input_fn("M,0.4,0.3,0.1,0.5,0.2,0.1,0.15", CSV), model)
    assert output_fn(prediction, accept)[1] == kind


def test_unanswerable_accept_is_406(model):
    prediction = predict_fn(input_fn("M,0.4,0.3,0.1,0.5,0.2,0.1,0.15", CSV), model)
    with pytest.raises(InvalidInput) as info:
        output_fn(prediction, "image/png")
    assert info.value.status_code == 406


def test_model_fn_reads_identity(model_dir, model):
    assert model.model_name == "abalone-age"
    assert model.model_version == "4"
    assert model.run_id == "r123"
    assert model.fast_path is not None


def test_model_fn_rejects_a_directory_without_a_model(tmp_path):
    with pytest.raises(UsageError, match="not a model directory"):
        model_fn(tmp_path)


def test_model_fn_without_metadata_has_no_version(tmp_path):
    d = make_model_dir(tmp_path / "m", n=200)
    (d / "metadata.json").unlink()
    loaded = model_fn(d)
    assert loaded.model_version is None
    body, _ = output_fn(predict_fn(input_fn("I,0.2,0.15,0.05,0.1,0.04,0.02,0.03", CSV), loaded), "")
    assert json.loads(body)["model_version"] is None


def test_mlflow_model_directory(tmp_path, rows):
    import mlflow.sklearn

    frame = make_abalone(300, seed=3)
    pipeline = build_model().fit(frame[list(FEATURES)], frame["rings"])
    target = tmp_path / "mlflow-model"
    mlflow.sklearn.save_model(pipeline, str(target), serialization_format="cloudpickle")
    loaded = model_fn(target)
    got = predict_fn(input_fn(csv_text(rows), CSV), loaded).rings
    np.testing.assert_array_equal(got, pipeline.predict(rows[list(FEATURES)]))
    assert loaded.fast_path is not None


# ---- the fast path: bit-identical to Pipeline.predict or not used --------------------------------


def _pre(scaler=None, remainder_passthrough: bool = False) -> ColumnTransformer:
    numeric = list(NUMERIC_FEATURES)
    if remainder_passthrough:
        return ColumnTransformer(
            [
                ("sex", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["sex"]),
                ("num", scaler or StandardScaler(), numeric[:4]),
            ],
            remainder="passthrough",
        )
    return ColumnTransformer(
        [
            ("sex", OneHotEncoder(categories=[["F", "I", "M"]]), [0]),
            ("num", scaler or StandardScaler(), numeric),
        ]
    )


FAST_CASES = {
    "default model (jobs.model)": (build_model, True),
    "linear": (lambda: Pipeline([("pre", _pre()), ("reg", LinearRegression())]), True),
    "minmax + passthrough remainder + ridge": (
        lambda: Pipeline([("pre", _pre(MinMaxScaler(), True)), ("reg", Ridge())]),
        True,
    ),
    "extra step + gradient boosting": (
        lambda: Pipeline(
            [
                ("pre", _pre()),
                ("poly", PolynomialFeatures(2)),
                ("reg", GradientBoostingRegressor(n_estimators=20, random_state=0)),
            ]
        ),
        True,
    ),
    "unknown transformer": (
        lambda: Pipeline(
            [
                (
                    "pre",
                    ColumnTransformer(
                        [
                            ("sex", OneHotEncoder(), ["sex"]),
                            ("num", FunctionTransformer(np.log1p), list(NUMERIC_FEATURES)),
                        ]
                    ),
                ),
                ("reg", LinearRegression()),
            ]
        ),
        False,
    ),
    "pandas output": (
        lambda: Pipeline([("pre", _pre(None, True)), ("reg", LinearRegression())]).set_output(
            transform="pandas"
        ),
        False,
    ),
    "constant": (lambda: Pipeline([("pre", _pre()), ("reg", DummyRegressor())]), True),
    "clipped voting ensemble (svr, mlp, ridge)": (
        lambda: Pipeline(
            [
                ("pre", _pre()),
                ("scale", StandardScaler()),
                (
                    "reg",
                    TransformedTargetRegressor(
                        regressor=VotingRegressor(
                            [
                                ("svr", SVR(C=3.0)),
                                (
                                    "mlp",
                                    MLPRegressor(
                                        hidden_layer_sizes=(8,), max_iter=300, random_state=0
                                    ),
                                ),
                                ("ridge", Ridge()),
                            ]
                        ),
                        transformer=FunctionTransformer(
                            inverse_func=np.clip,
                            inv_kw_args={"a_min": 1.0, "a_max": 29.0},
                            check_inverse=False,
                        ),
                        check_inverse=False,
                    ),
                ),
            ]
        ),
        True,
    ),
}
DEEP = {"default model (jobs.model)", "linear", "clipped voting ensemble (svr, mlp, ridge)"}


@pytest.mark.parametrize("name", list(FAST_CASES))
def test_fast_path_is_bit_identical_or_absent(tmp_path, name):
    factory, has_fast = FAST_CASES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        loaded = model_fn(make_model_dir(tmp_path / "m", factory(), n=400))
    assert (loaded.fast_path is not None) is has_fast
    if name in DEEP:  # estimators compiled (no per-call validation) and still bit-identical
        assert loaded.fast_path.deep
    frame = make_abalone(1500, seed=11)
    parsed = input_fn(csv_text(frame), CSV)
    served = predict_fn(parsed, loaded).rings
    np.testing.assert_array_equal(served, loaded.pipeline.predict(frame[list(FEATURES)]))
    for i in range(0, 60, 7):  # single rows, as the hot path sends them
        one = predict_fn(input_fn(csv_text(frame.iloc[[i]]), CSV), loaded).rings
        np.testing.assert_array_equal(one, loaded.pipeline.predict(frame[list(FEATURES)].iloc[[i]]))


def test_fast_path_that_disagrees_is_discarded(model):
    """The load-time self-check rejects a compiled path whose predictions differ."""
    good = fastpath._build_fast_path(model.pipeline)
    assert good is not None and fastpath._same_predictions(model.pipeline, good)

    def off_by_a_hair(sex, numeric):
        return good(sex, numeric) + 1e-12

    assert not fastpath._same_predictions(model.pipeline, off_by_a_hair)


def test_probe_rows_are_valid_requests():
    probe = fastpath.probe_rows(50)
    body = "\n".join(
        ",".join([s, *map(repr, values)])
        for s, values in zip(probe.sex, probe.numeric.tolist(), strict=True)
    )
    parsed = input_fn(body, CSV)
    np.testing.assert_array_equal(parsed.numeric, probe.numeric)


def test_errors_become_toolkit_errors_inside_the_sagemaker_container(monkeypatch, model):
    """The container's model server answers 4xx only for its BaseInferenceToolkitError."""
    import sys
    import types

    class BaseInferenceToolkitError(
        Exception
    ):  # the toolkit's shape: (status_code, message, phrase)
        def __init__(self, status_code, message, phrase):
            self.status_code, self.message, self.phrase = status_code, message, phrase

    errors = types.ModuleType("sagemaker_inference.errors")
    errors.BaseInferenceToolkitError = BaseInferenceToolkitError
    monkeypatch.setitem(sys.modules, "sagemaker_inference", types.ModuleType("sagemaker_inference"))
    monkeypatch.setitem(sys.modules, "sagemaker_inference.errors", errors)
    handlers._toolkit_error_class.cache_clear()
    try:
        with pytest.raises(BaseInferenceToolkitError) as info:
            input_fn("X,1,2,3,4,5,6,7", CSV)
        assert info.value.status_code == 422 and "'sex'" in info.value.message
        assert isinstance(info.value, InvalidInput) and str(info.value) == info.value.message
        prediction = predict_fn(input_fn("M,0.4,0.3,0.1,0.5,0.2,0.1,0.15", CSV), model)
        with pytest.raises(BaseInferenceToolkitError) as info:
            output_fn(prediction, "image/png")
        assert info.value.status_code == 406
    finally:
        handlers._toolkit_error_class.cache_clear()


def test_transform_fn_chains_the_handlers_outside_the_image(model):
    """Outside the image (no sagemaker_containers) transform_fn raises InvalidInput like the
    handlers; in the image it returns the error response (tests/container)."""
    row = "M,0.4,0.3,0.1,0.5,0.2,0.1,0.15"
    want = output_fn(predict_fn(input_fn(row, CSV), model), CSV)
    assert transform_fn(model, row, CSV, CSV) == want
    with pytest.raises(InvalidInput) as info:
        transform_fn(model, "X" + row[1:], CSV, None)
    assert info.value.status_code == 422 and "'sex'" in info.value.message
    with pytest.raises(InvalidInput) as info:
        transform_fn(model, "not csv at all", CSV, "image/png")
    assert info.value.status_code == 406  # Accept is checked first, as abalone serve does
