"""The seed model's inputs and failures (the happy path runs in test_rehearsal.py)."""

from __future__ import annotations

import io
import shutil
import tarfile

import pytest

from components.packaging import PackagingError, program_assets, reproducible_targz
from components.seed_model import SeedModelError, seed_key, seed_model, seed_model_file
from tests.components.harness import REPO


def test_a_configured_seed_model_is_used_as_is_and_must_exist(tmp_path):
    (tmp_path / "mine.tar.gz").write_bytes(reproducible_targz([("model.joblib", b"m")]))
    assert seed_model_file("mine.tar.gz", "", root=tmp_path) == tmp_path / "mine.tar.gz"
    missing = seed_model_file("nope.tar.gz", "", root=tmp_path)
    with pytest.raises(PackagingError, match=r"seed model .*nope\.tar\.gz does not exist"):
        program_assets(missing, build_dir=tmp_path / "build")


def test_the_cache_key_follows_the_code_and_the_source(tmp_path):
    for package in ("jobs", "validation"):
        shutil.copytree(
            REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    data = tmp_path / "a.csv"
    data.write_text("M,0.455,0.365,0.095,0.514,0.2245,0.101,0.15,15\n")
    first = seed_key(tmp_path, str(data))
    assert seed_key(tmp_path, str(data)) == first
    data.write_text("F,0.53,0.42,0.135,0.677,0.2565,0.1415,0.21,9\n")
    assert seed_key(tmp_path, str(data)) != first
    train = tmp_path / "jobs" / "train.py"
    before = seed_key(tmp_path)
    train.write_text(train.read_text() + "\n# changed\n")
    assert seed_key(tmp_path) != before


def test_the_packed_archive_is_reproducible():
    members = [("b.json", b"{}"), ("model.joblib", b"\x00\x01")]
    packed = reproducible_targz(members)
    assert packed == reproducible_targz(reversed(members))
    with tarfile.open(fileobj=io.BytesIO(packed)) as tar:
        assert tar.getnames() == ["b.json", "model.joblib"]
        assert {m.mtime for m in tar.getmembers()} == {0}


@pytest.mark.slow
def test_a_source_the_data_contract_rejects_is_a_clear_error_and_leaves_nothing(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("not,an,abalone\n1,2,3\n")
    build = tmp_path / "build"
    with pytest.raises(SeedModelError, match=r"abalone run.*exit 1.*trained no model"):
        seed_model(build, source=str(bad))
    assert list(build.iterdir()) == []  # no seed, no partial file
