"""The sensor front end (edge_agent/preprocess/series.py): what the trainer and the agent share."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.errors import ModelError, SourceError
from edge_agent.preprocess import series
from edge_agent.sources.series import check_columns
from tests.sensor_helpers import IMU, MACHINE, walk


def stream(spec: series.SeriesSpec, t: np.ndarray, x: np.ndarray, chunk: int) -> list[tuple[np.ndarray, float]]:
    r, w = series.Resampler(spec), series.Windower(spec)
    out = []
    for i in range(0, len(t), chunk):
        for seg in r.push(t[i:i + chunk], x[i:i + chunk]):
            out += w.push(seg)
    return out


def test_streaming_sample_by_sample_makes_the_trainers_windows() -> None:
    t, x = walk(6.0, rate_hz=50.0)
    batch, ends, _ = series.recording_windows(t, x, IMU)
    for chunk in (1, 7, 10_000):
        got = stream(IMU, t, x, chunk)
        assert len(got) == len(batch)
        np.testing.assert_allclose(np.stack([g[0] for g in got]), batch, atol=1e-5)
        np.testing.assert_allclose([g[1] for g in got], ends)


def test_resampling_50_hz_to_25_hz_keeps_time_and_values() -> None:
    t, x = walk(4.0, rate_hz=50.0)
    segs = series.Resampler(IMU).push(t, x)
    assert len(segs) == 1
    assert np.allclose(np.diff(segs[0].t), 1 / 25)
    np.testing.assert_allclose(segs[0].x, x[::2], atol=1e-4)
    assert len(series.recording_windows(t, x, IMU)[0]) == (100 - 50) // 25 + 1


def test_bad_samples_are_dropped_and_counted() -> None:
    t = np.array([0.0, 0.04, 0.04, 0.02, 0.08, 0.12, 0.16])
    x = np.ones((7, 3))
    x[4, 1] = np.nan
    x[5, 0] = np.inf
    r = series.Resampler(IMU)
    r.push(t, x)
    c = r.counts
    assert (c.received, c.non_finite, c.duplicates, c.out_of_order) == (7, 2, 1, 1)
    assert c.dropped() == 4


def test_a_gap_longer_than_max_gap_restarts_the_window() -> None:
    t1, x1 = walk(1.5, 50.0)
    t2, x2 = walk(1.5, 50.0, t0=10.0)  # 8.5 s of nothing, max_gap 0.5 s
    t, x = np.concatenate([t1, t2]), np.concatenate([x1, x2])
    r, w = series.Resampler(IMU), series.Windower(IMU)
    windows = [win for seg in r.push(t, x) for win in w.push(seg)]
    assert r.counts.gaps == 1
    # each 1.5 s half holds 37-38 samples at 25 Hz: no 50-sample window may straddle the gap
    assert windows == []


def test_summary_features_and_spec_shape() -> None:
    raw = np.random.default_rng(0).normal(30, 3, (4, 100, 2))
    f = series.features(raw, MACHINE)
    assert f.shape == (4, *MACHINE.shape) == (4, 10)
    assert series.features(raw[0], MACHINE).shape == (10,)


def test_the_manifest_round_trip_and_errors_name_the_field() -> None:
    data = IMU.to_json()
    assert series.SeriesSpec.from_mapping(data, "m") == IMU
    with pytest.raises(ModelError, match=r"'input.window'"):
        series.SeriesSpec.from_mapping({**data, "window": "50"}, "m")
    with pytest.raises(ModelError, match=r"'input.channels'"):
        series.SeriesSpec.from_mapping({**data, "channels": []}, "m")
    with pytest.raises(ModelError, match=r"'input.channels\[1\].name'"):
        series.SeriesSpec.from_mapping({**data, "channels": [{"name": "a"}, {"unit": "g"}]}, "m")


def test_a_missing_or_extra_channel_is_named() -> None:
    with pytest.raises(SourceError, match="missing channel 'az'"):
        check_columns(["t", "ax", "ay"], IMU.names, "x")
    with pytest.raises(SourceError, match="extra channel 'mag'"):
        check_columns(["t", "ax", "ay", "az", "mag"], IMU.names, "x")
    check_columns(["t", "ax", "ay", "az", "label"], IMU.names, "x")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.floats(-5, 50), st.sampled_from([np.nan, np.inf, -np.inf])),
                          st.floats(allow_nan=True, allow_infinity=True, width=32)), max_size=300),
       st.integers(1, 50))
def test_any_samples_never_crash_and_the_counts_add_up(rows: list[tuple[float, float]], chunk: int) -> None:
    t = np.array([r[0] for r in rows], np.float64)
    x = np.repeat(np.array([r[1] for r in rows], np.float64)[:, None], 3, axis=1) if rows else np.zeros((0, 3))
    r, w = series.Resampler(IMU), series.Windower(IMU)
    for i in range(0, max(1, len(t)), chunk):
        for seg in r.push(t[i:i + chunk], x[i:i + chunk]):
            assert np.all(np.diff(seg.t) > 0)
            for win, _ in w.push(seg):
                assert win.shape == (50, 3) and np.isfinite(win).all()
    c = r.counts
    assert c.received == len(t)
    assert c.dropped() <= c.received


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=5),
                    max_leaves=20))
def test_any_json_record_is_a_sample_or_a_counted_drop(obj: object) -> None:
    from edge_agent.sources.series import RecordParser

    parser = RecordParser(("ax", "ay"), {"ax": "a.x", "ay": "a.1"}, "")
    for record in (obj, {"a": {"x": obj, "1": 1.0}, "t": obj}, {"a": {"x": 1, "1": 2}, "t": 5}):
        before = parser.bad
        rec = parser.from_json(record, 7.0)
        assert (rec is None) == (parser.bad == before + 1)
        if rec is not None:
            assert len(rec[1]) == 2
