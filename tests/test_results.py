"""ntk_adv.results.to_frame / write_parquet: a run's results.csv as a typed pandas DataFrame, and Parquet."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ntk_adv.arch import INF_WIDTH
from ntk_adv.results import to_frame, write_csv, write_parquet

ROWS = [
    {"width": 64, "seed": 0, "eps": 0.5, "metric": "agreement", "value": 0.75, "lazy": True},
    {"width": INF_WIDTH, "seed": 1, "eps": 1.0, "metric": "agreement", "value": float("nan"), "lazy": False},
    {"width": 1024, "seed": 2, "eps": 2.0, "metric": "accuracy", "value": 1.0, "lazy": True, "stale": "code"},
]


def test_to_frame_types_the_columns_and_keeps_inf_width(tmp_path):
    write_csv(ROWS, tmp_path / "results.csv")
    for source in (tmp_path, tmp_path / "results.csv", str(tmp_path)):
        frame = to_frame(source)
        assert list(frame.columns) == ["width", "seed", "eps", "metric", "value", "lazy", "stale"]
        assert frame.shape == (3, 7)
        assert frame["width"].dtype == np.float64 and math.isinf(frame["width"][1])
        assert frame["width"][1] == INF_WIDTH and frame["width"][0] == 64.0
        assert frame["seed"].dtype == np.int64 and list(frame["seed"]) == [0, 1, 2]
        assert frame["eps"].dtype == np.float64
        assert frame["value"].dtype == np.float64 and np.isnan(frame["value"][1])
        assert frame["lazy"].dtype == bool and list(frame["lazy"]) == [True, False, True]
        assert not pd.api.types.is_numeric_dtype(frame["metric"])
        assert frame["stale"].isna().tolist() == [True, True, False] and frame["stale"][2] == "code"
    # a numeric column with a gap is float (NaN), a bool column with a gap is pandas' nullable boolean
    write_csv([{"a": 1, "b": True}, {"a": None, "b": None}], tmp_path / "gaps.csv")
    gaps = to_frame(tmp_path / "gaps.csv")
    assert gaps["a"].dtype == np.float64 and np.isnan(gaps["a"][1])
    assert str(gaps["b"].dtype) == "boolean"


def test_write_parquet_round_trips(tmp_path):
    write_csv(ROWS, tmp_path / "results.csv")
    path = write_parquet(tmp_path)
    assert path == tmp_path / "results.parquet"
    pd.testing.assert_frame_equal(pd.read_parquet(path), to_frame(tmp_path))


def test_to_frame_names_a_missing_table(tmp_path):
    with pytest.raises(FileNotFoundError, match="results table not found: .*results.csv"):
        to_frame(tmp_path)
