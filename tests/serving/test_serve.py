"""``abalone serve`` over real HTTP on loopback: formats, malformed payloads (property-based),
limits, concurrency, and data capture."""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.adapters.capture import iter_records
from jobs.core.schema import FEATURES, NUMERIC_FEATURES
from jobs.core.synthetic import make_abalone
from jobs.serving.handlers import input_fn, model_fn, predict_fn
from jobs.serving.server import ServeLimits, serve_in_thread
from tests.serving.test_inference import all_formats, make_model_dir

CSV = "text/csv"
JSON = "application/json"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return model_fn(make_model_dir(tmp_path_factory.mktemp("model"), model_version="5"))


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    capture = tmp_path_factory.mktemp("capture")
    with serve_in_thread(model, capture) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def offline(model, frame: pd.DataFrame) -> np.ndarray:
    return model.pipeline.predict(frame[list(FEATURES)])


def test_ping(client):
    resp = client.get("/ping")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ok" and body["model_version"] == "5"
    assert set(body["capture"]) == {"written", "dropped"} and body["capture"]["dropped"] == 0


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("0_5", "underscores"),  # float() reads 0.5
        ("\u0660.\u0665", "ARABIC-INDIC"),  # float() reads 0.5
        ("\uff10.\uff15", "FULLWIDTH"),  # float() reads 0.5
        ("NaN", "spelled out"),
        ("Infinity", "spelled out"),
    ],
)
def test_numbers_outside_the_contract_grammar_are_422(client, value, why):
    """The server reads numbers as ingest does (jobs.core.numbers), not as Python's float()."""
    body = f"M,{value},0.365,0.095,0.514,0.2245,0.101,0.15"
    resp = client.post("/invocations", content=body.encode(), headers={"Content-Type": CSV})
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error.startswith("row 1, field 'length': not a number:") and why in error
    ok = client.post(
        "/invocations", content=body.replace(value, "0.5"), headers={"Content-Type": CSV}
    )
    assert ok.status_code == 200


@pytest.mark.parametrize("name", list(all_formats(make_abalone(3, seed=1))))
def test_every_format_over_http(client, model, name):
    frame = make_abalone(25, seed=4)
    content_type, body = all_formats(frame)[name]
    resp = client.post("/invocations", content=body, headers={"Content-Type": content_type})
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert doc["model_version"] == "5"
    rings = np.array([p["rings"] for p in doc["predictions"]])
    np.testing.assert_array_equal(rings, offline(model, frame))
    assert resp.headers["x-request-id"]


def test_csv_answer_and_request_id_echo(client, model):
    frame = make_abalone(4, seed=9)
    resp = client.post(
        "/invocations",
        content=frame[list(FEATURES)].to_csv(index=False, header=False),
        headers={"Content-Type": CSV, "Accept": CSV, "X-Request-Id": "trace-42"},
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"] == CSV
    assert resp.headers["x-request-id"] == "trace-42"
    lines = [line.split(",") for line in resp.text.strip().splitlines()]
    np.testing.assert_array_equal([float(r) for r, _ in lines], offline(model, frame))
    assert all(float(a) == pytest.approx(float(r) + 1.5) for r, a in lines)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/invocations", 405), ("POST", "/ping", 405), ("GET", "/nope", 404)],
)
def test_routes(client, method, path, status):
    resp = client.request(method, path)
    assert resp.status_code == status
    assert "error" in resp.json()


def test_error_answers_name_row_and_field(client):
    body = "M,0.4,0.3,0.1,0.5,0.2,0.1,0.15\nF,0.4,0.3,0.1,0.5,0.2,0.1,0.15\nI,0.4,0.3,0.1,0.5,x,0.1,0.1"
    resp = client.post("/invocations", content=body, headers={"Content-Type": CSV})
    assert resp.status_code == 422
    assert "row 3" in resp.json()["error"] and "shucked_weight" in resp.json()["error"]


def test_large_batch_is_served_off_the_event_loop(client, model):
    frame = make_abalone(3000, seed=5)
    resp = client.post(
        "/invocations",
        content=frame[list(FEATURES)].to_csv(index=False, header=False),
        headers={"Content-Type": CSV},
    )
    assert resp.status_code == 200
    rings = np.array([p["rings"] for p in resp.json()["predictions"]])
    np.testing.assert_array_equal(rings, offline(model, frame))


# ---- malformed payloads: property-based, only 4xx, server stays up ------------------------------

_GOOD = ["M", 0.455, 0.365, 0.095, 0.514, 0.2245, 0.101, 0.15]
_bad_numbers = st.one_of(
    st.just(math.nan),
    st.just(math.inf),
    st.just(-math.inf),
    st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False),
    st.floats(min_value=10.001, allow_nan=False, allow_infinity=False),
    st.integers(min_value=11),
    st.integers(max_value=-1),
    st.text(max_size=5),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)
_bad_sex = st.one_of(
    st.text(max_size=4).filter(lambda s: s not in ("M", "F", "I")),
    st.integers(),
    st.floats(allow_nan=False),
    st.none(),
    st.booleans(),
    st.lists(st.just("M"), max_size=2),
)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def bad_json_row(draw):
    """One valid row with exactly one thing wrong, as a list or a record."""
    row = list(_GOOD)
    flaw = draw(st.sampled_from(["sex", "number", "short", "long", "record-missing", "record-key"]))
    if flaw == "sex":
        row[0] = draw(_bad_sex)
    elif flaw == "number":
        row[draw(st.integers(1, 7))] = draw(_bad_numbers)
    elif flaw == "short":
        row = row[: draw(st.integers(0, 7))]
    elif flaw == "long":
        row = row + draw(st.lists(st.integers(), min_size=2, max_size=4))
    if flaw.startswith("record"):
        rec = dict(zip(FEATURES, row, strict=True))
        if flaw == "record-missing":
            del rec[draw(st.sampled_from(FEATURES))]
        else:
            rec[draw(st.text(min_size=1, max_size=8).filter(lambda k: k not in FEATURES))] = 1
        return rec
    return row


def _media_type(value: str | None) -> str | None:
    return None if value is None else value.split(";")[0].strip().lower()


# What an HTTP client can put on the wire as a header value (RFC 9110 field-value: visible ASCII
# with inner spaces/tabs, no leading or trailing white space), or no Content-Type header at all.
_sendable_content_type = st.none() | st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.just("\t"), max_size=20
).map(lambda t: t.strip(" \t"))


@st.composite
def malformed_payload(draw):
    """(content type, body bytes) that the contract must reject with a 4xx."""
    kind = draw(
        st.sampled_from(
            ["bytes", "json-shape", "json-row", "csv-count", "csv-value", "content-type"]
        )
    )
    if kind == "bytes":
        ctype = draw(st.sampled_from([CSV, JSON, "text/csv; charset=utf-8"]))
        body = draw(st.binary(max_size=64))
        if ctype.startswith(CSV):  # a random valid CSV row is impossible, but be exact
            body = b"\x00" + body
        return ctype, body
    if kind == "json-shape":
        value = draw(_json_values)
        return JSON, json.dumps({"instances": [value, "not a row"]}).encode()
    if kind == "json-row":
        good = [list(_GOOD)] * draw(st.integers(0, 3))
        position = draw(st.integers(0, len(good)))
        rows = [*good[:position], draw(bad_json_row()), *good[position:]]
        wrapper = draw(st.sampled_from(["instances", "dataframe_records", "bare"]))
        doc = rows if wrapper == "bare" else {wrapper: rows}
        return JSON, json.dumps(doc, allow_nan=True).encode()
    if kind == "csv-count":
        n = draw(st.integers(0, 20).filter(lambda k: k not in (8, 9)))
        fields = (["M"] + ["0.1"] * 20)[:n]
        return CSV, (",".join(fields) + "\n").encode()
    if kind == "csv-value":
        fields = [str(v) for v in _GOOD]
        j = draw(st.integers(0, 7))
        if j == 0:
            fields[0] = draw(st.sampled_from(["m", "X", "male", "", "0", "MF"]))
        else:
            fields[j] = draw(
                st.sampled_from(["nan", "inf", "-inf", "-0.1", "1e309", "11", "abc", "", "0x1"])
            )
        lines = [",".join(str(v) for v in _GOOD)] * draw(st.integers(0, 3)) + [",".join(fields)]
        return CSV, "\n".join(lines).encode()
    ctype = draw(_sendable_content_type.filter(lambda t: _media_type(t) not in (CSV, JSON)))
    return ctype, ",".join(map(str, _GOOD)).encode()


def test_malformed_payloads_get_4xx_and_the_server_survives(server):
    seen: list[int] = []
    with httpx.Client(base_url=server.url, timeout=30) as c:

        @settings(
            max_examples=1100,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(malformed_payload())
        def check(payload):
            ctype, body = payload
            headers = {} if ctype is None else {"Content-Type": ctype}
            resp = c.post("/invocations", content=body, headers=headers)
            seen.append(resp.status_code)
            assert 400 <= resp.status_code < 500, (payload, resp.status_code, resp.text)
            assert resp.json()["error"]

        check()
        assert len(seen) >= 1000
        assert c.get("/ping").status_code == 200
        ok = c.post(
            "/invocations", content=",".join(map(str, _GOOD)), headers={"Content-Type": CSV}
        )
        assert ok.status_code == 200


# ---- limits -------------------------------------------------------------------------------------


def test_body_and_row_limits(model, tmp_path):
    limits = ServeLimits(max_body_bytes=2000, max_rows=5)
    row = ",".join(map(str, _GOOD))
    with (
        serve_in_thread(model, tmp_path / "cap", limits) as srv,
        httpx.Client(base_url=srv.url, timeout=30) as c,
    ):
        big = c.post("/invocations", content=(row + "\n") * 60, headers={"Content-Type": CSV})
        assert big.status_code == 413 and "2000 bytes" in big.json()["error"]
        huge = c.post("/invocations", content=b"x" * 100_000, headers={"Content-Type": CSV})
        assert huge.status_code == 413
        many = c.post("/invocations", content="\n".join([row] * 6), headers={"Content-Type": CSV})
        assert many.status_code == 413 and "limit is 5" in many.json()["error"]
        js = c.post("/invocations", json={"instances": [_GOOD] * 6})
        assert js.status_code == 413
        assert c.post("/invocations", content="\n".join([row] * 5), headers={"Content-Type": CSV})
        assert c.get("/ping").status_code == 200
    assert sum(1 for _ in iter_records(tmp_path / "cap")) == 1


# ---- concurrency --------------------------------------------------------------------------------


def test_concurrent_clients_get_their_own_predictions(server, model):
    frame = make_abalone(400, seed=21)
    bodies = [
        ",".join([r[0], *map(repr, r[1:])]) for r in frame[list(FEATURES)].itertuples(index=False)
    ]
    # In-process prediction of the same one-row request (the pipeline itself can differ in the
    # last bit between a one-row and a many-row call: BLAS kernels differ).
    expected = [predict_fn(input_fn(b, CSV), model).rings[0] for b in bodies]
    assert expected[0] == offline(model, frame.iloc[[0]])[0]
    errors: list[str] = []

    def worker(t: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            for k in range(50):
                i = t * 50 + k
                accept = CSV if k % 2 else JSON
                resp = c.post(
                    "/invocations",
                    content=bodies[i],
                    headers={"Content-Type": CSV, "Accept": accept},
                )
                got = (
                    float(resp.text.split(",")[0])
                    if accept == CSV
                    else resp.json()["predictions"][0]["rings"]
                )
                if resp.status_code != 200 or got != expected[i]:
                    errors.append(f"row {i}: {resp.status_code} {got} != {expected[i]}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(worker, range(8)))
    assert errors == []


# ---- data capture -------------------------------------------------------------------------------


def test_capture_has_exactly_one_record_per_successful_request(model, tmp_path):
    capture = tmp_path / "capture"
    frame = make_abalone(30, seed=33)
    sent: dict[str, pd.DataFrame] = {}
    with serve_in_thread(model, capture) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:

        def send(k: int) -> None:
            part = frame.iloc[k : k + 1 + k % 3]
            resp = c.post(
                "/invocations",
                content=part[list(FEATURES)].to_csv(index=False, header=False),
                headers={"Content-Type": CSV, "X-Request-Id": f"req-{k}"},
            )
            assert resp.status_code == 200
            sent[f"req-{k}"] = part

        for k in range(20):
            send(k)
            bad = c.post("/invocations", content="Z,1", headers={"Content-Type": CSV})
            assert bad.status_code >= 400
    records = list(iter_records(capture))
    assert sorted(r["request_id"] for r in records) == sorted(sent)
    for record in records:
        part = sent[record["request_id"]]
        assert record["model_version"] == "5"
        assert record["model_name"] == "abalone-age"
        assert record["content_type"] == CSV
        assert record["timestamp"].endswith("Z")
        inputs = pd.DataFrame(record["inputs"])[list(FEATURES)]
        np.testing.assert_array_equal(
            inputs[list(NUMERIC_FEATURES)].to_numpy(), part[list(NUMERIC_FEATURES)].to_numpy()
        )
        assert list(inputs["sex"]) == list(part["sex"])
        rings = [o["rings"] for o in record["outputs"]]
        np.testing.assert_array_equal(rings, offline(model, part))
    hour_files = list(capture.glob("*/*/*/*.jsonl"))
    assert hour_files and all(p.name[:2].isdigit() for p in hour_files)


def test_handlers_and_server_agree(client, model):
    frame = make_abalone(10, seed=77)
    body = frame[list(FEATURES)].to_csv(index=False, header=False)
    direct = predict_fn(input_fn(body, CSV), model).rings
    served = client.post("/invocations", content=body, headers={"Content-Type": CSV}).json()
    np.testing.assert_array_equal([p["rings"] for p in served["predictions"]], direct)


# ---- abalone serve: the CLI, with a model from the MLflow registry ------------------------------


@pytest.fixture(scope="module")
def registered(mlflow_server):
    """A registered version with alias @champion, logged the way jobs/train.py logs models."""
    import mlflow
    import mlflow.sklearn

    from jobs.core.model import build_model

    frame = make_abalone(300, seed=12)
    pipeline = build_model().fit(frame[list(FEATURES)], frame["rings"])
    name = "abalone-age-servetest"
    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_registry_uri(mlflow_server)  # other tests may have pointed the registry elsewhere
    mlflow.set_experiment("serve-tests")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            pipeline, name="model", serialization_format="cloudpickle", registered_model_name=name
        )
    client = mlflow.MlflowClient(mlflow_server)
    version = str(info.registered_model_version)
    client.set_registered_model_alias(name, "champion", version)
    return {"uri": mlflow_server, "name": name, "version": version, "pipeline": pipeline}


def test_load_from_registry_alias(registered):
    from jobs.serving.server import load_serving_model

    loaded = load_serving_model(f"models:/{registered['name']}@champion", registered["uri"])
    assert loaded.model_version == registered["version"]
    assert loaded.model_name == registered["name"]
    assert loaded.fast_path is not None
    frame = make_abalone(20, seed=13)
    body = frame[list(FEATURES)].to_csv(index=False, header=False)
    np.testing.assert_array_equal(
        predict_fn(input_fn(body, CSV), loaded).rings,
        registered["pipeline"].predict(frame[list(FEATURES)]),
    )


def test_abalone_serve_cli_end_to_end(registered, tmp_path):
    """`abalone serve --model models:/…@champion` answers, and its capture names the version."""
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import free_port, wait_http

    port = free_port()
    env = dict(
        os.environ, ABALONE_HOME=str(tmp_path / "home"), MLFLOW_TRACKING_URI=registered["uri"]
    )
    cmd = [
        sys.executable,
        "-m",
        "jobs",
        "serve",
        "--model",
        f"models:/{registered['name']}@champion",
    ]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", timeout=60, proc=proc)
        resp = httpx.post(
            f"http://127.0.0.1:{port}/invocations",
            json={"instances": [_GOOD]},
            timeout=10,
        )
        assert resp.status_code == 200
        assert resp.json()["model_version"] == registered["version"]
    finally:
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=30)[0].decode()
    assert f"v{registered['version']}" in output
    records = list(iter_records(tmp_path / "home" / "capture"))
    assert len(records) == 1
    assert records[0]["model_version"] == registered["version"]


def test_abalone_serve_cli_errors(tmp_path):
    from typer.testing import CliRunner

    from jobs.cli import app

    runner = CliRunner()
    missing = runner.invoke(app, ["serve", "--model", str(tmp_path / "nope")])
    assert missing.exit_code == 2
    assert "no such model directory" in missing.output
    (tmp_path / "empty").mkdir()
    empty = runner.invoke(app, ["serve", "--model", str(tmp_path / "empty")])
    assert empty.exit_code == 2 and "not a model directory" in empty.output
    port = runner.invoke(app, ["serve", "--model", str(tmp_path / "empty"), "--port", "0"])
    assert port.exit_code == 2 and "--port" in port.output


def test_unwritable_capture_dir_fails_fast(model, tmp_path):
    from jobs.core.errors import StorageError

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(StorageError, match="capture dir"), serve_in_thread(model, blocker / "c"):
        pass
