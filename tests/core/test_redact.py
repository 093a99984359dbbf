"""Redaction of credentials in URLs, free text and JSON-like data (pure)."""

from __future__ import annotations

import logging

import pytest

from jobs.core.redact import RedactingFilter, redact, redact_url

PRESIGNED = (
    "https://bucket.s3.eu-west-1.amazonaws.com/raw/abalone.csv?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAEXAMPLE%2F20261130%2Feu-west-1%2Fs3%2Faws4_request&X-Amz-Date=20261130T0"
    "&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Security-Token=FQoGZXIvYXdzEXAMPLE"
    "&X-Amz-Signature=0123456789abcdef"
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://user:s3cret@host:8080/a.csv", "http://***@host:8080/a.csv"),
        ("https://tok@github.com/x?y=1", "https://***@github.com/x?y=1"),
        ("http://u:p%40ss@h/p@q", "http://***@h/p@q"),
        ("https://h/a.csv?token=abc&page=2", "https://h/a.csv?token=***&page=2"),
        (
            "https://h/a?sig=1&Signature=2&key=3&api_key=4",
            "https://h/a?sig=***&Signature=***&key=***&api_key=***",
        ),
        ("https://h/cb#access_token=xyz&state=ok", "https://h/cb#access_token=***&state=ok"),
        ("https://h/a.csv", "https://h/a.csv"),
        ("sqlite:////tmp/x/mlflow.db", "sqlite:////tmp/x/mlflow.db"),
        ("postgresql://mlflow:pw@db:5432/mlflow", "postgresql://***@db:5432/mlflow"),
        ("s3://bucket/raw/abalone.csv", "s3://bucket/raw/abalone.csv"),
    ],
)
def test_redact_url(url, expected):
    assert redact_url(url) == expected
    assert redact(url) == expected


def test_presigned_url_keeps_where_and_drops_the_secrets():
    shown = redact(PRESIGNED)
    for secret in ("AKIAEXAMPLE", "FQoGZXIvYXdzEXAMPLE", "0123456789abcdef"):
        assert secret not in shown
    assert shown.startswith("https://bucket.s3.eu-west-1.amazonaws.com/raw/abalone.csv?")
    assert "X-Amz-Expires=3600" in shown and "X-Amz-Algorithm=AWS4-HMAC-SHA256" in shown


def test_text_and_data():
    text = f"download failed from http://a:b@h/x.csv (also {PRESIGNED}), retry"
    shown = redact(text)
    assert "a:b@" not in shown and "0123456789abcdef" not in shown
    assert shown.startswith("download failed from http://***@h/x.csv (also https://bucket")
    assert shown.endswith(", retry")
    data = {
        "source": {"source": "http://u:pw@h/a"},
        "list": ["token=x", "https://h/?token=y"],
        "n": 3,
    }
    assert redact(data) == {
        "source": {"source": "http://***@h/a"},
        "list": ["token=x", "https://h/?token=***"],
        "n": 3,
    }
    assert redact(("http://u:pw@h",)) == ("http://***@h",)
    assert redact(None) is None and redact(1.5) == 1.5


def test_logging_filter_redacts_messages_arguments_and_tracebacks():
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Keep()
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("tests.redact")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("fetching %s", "http://user:hunter2@h/a.csv")
        try:
            raise ValueError("cannot open https://h/a?X-Amz-Signature=deadbeef")
        except ValueError:
            logger.exception("failed")
        logger.warning("100% done")  # a literal % without args still formats
    finally:
        logger.removeHandler(handler)
    text = "\n".join(records)
    assert "hunter2" not in text and "deadbeef" not in text
    assert "http://***@h/a.csv" in text and "X-Amz-Signature=***" in text
    assert "100% done" in text
