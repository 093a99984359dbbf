"""Dataset version and split: deterministic, disjoint, stratified."""

from __future__ import annotations

import pandas as pd
import pytest

from jobs.core.data import MIN_DATASET_ROWS, dataset_version, split
from jobs.core.errors import RejectedError
from jobs.core.synthetic import make_abalone


def test_split_is_deterministic_disjoint_and_complete():
    frame = make_abalone(1000, seed=3)
    a, b = split(frame, seed=0), split(frame, seed=0)
    for name in ("train", "validation", "test"):
        pd.testing.assert_frame_equal(a[name], b[name])
    sizes = {k: len(v) for k, v in a.items()}
    assert sum(sizes.values()) == 1000
    assert 680 <= sizes["train"] <= 720 and 130 <= sizes["test"] <= 170
    keys = [set(map(tuple, part.astype(str).to_numpy())) for part in a.values()]
    assert not (keys[0] & keys[2]) and not (keys[1] & keys[2])


def test_split_is_stratified_on_rings():
    frame = make_abalone(2000, seed=4)
    parts = split(frame, seed=0)
    assert abs(parts["test"].rings.mean() - parts["train"].rings.mean()) < 0.25
    assert abs(parts["test"].rings.median() - frame.rings.median()) <= 1


def test_other_seed_gives_other_split():
    frame = make_abalone(500, seed=5)
    assert not split(frame, seed=0)["test"].equals(split(frame, seed=1)["test"])


def test_dataset_version_is_a_content_digest():
    frame = make_abalone(300, seed=6)
    assert dataset_version(frame) == dataset_version(frame.copy())
    changed = frame.copy()
    changed.loc[0, "rings"] += 1
    assert dataset_version(changed) != dataset_version(frame)
    assert dataset_version(frame).startswith("ds-") and len(dataset_version(frame)) == 15


def test_split_needs_rows():
    with pytest.raises(RejectedError, match=r"not enough rows to train \(19 < 20\)"):
        split(make_abalone(19), seed=0)
    parts = split(make_abalone(MIN_DATASET_ROWS), seed=0)
    assert {name: len(part) for name, part in parts.items()} == {
        "train": 12,
        "validation": 4,
        "test": 4,
    }
