"""A folder of CSV recordings → windows, split by SOURCE (no TensorFlow here).

Layout (see docs/SENSORS.md)::

    DATA/<class>/<source>-<anything>.csv      classification: one sub-folder per class
    DATA/normal/<source>-<anything>.csv       anomaly: healthy recordings only (trained on)
    DATA/anomaly/<source>-<anything>.csv      anomaly, optional: held-out faults, a 'label' column per row

Each CSV has a header: ``t`` (seconds, increasing), one column per channel, and optionally
``label``. The part of the file name before the first ``-`` is the recording's source (a
subject, a machine, a day): train, validation and test get different sources, so the test
figures are for sensors the model never saw. Channels are the same columns in every file.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Final

import numpy as np

from ...errors import ConfigError
from ...preprocess import series

TIME_COLUMN: Final = "t"
LABEL_COLUMN: Final = "label"
NORMAL: Final = "normal"
ANOMALY: Final = "anomaly"


@dataclasses.dataclass(frozen=True)
class Recording:
    path: Path
    source: str
    label: str  # the folder (class, or "normal" / "anomaly")
    t: np.ndarray
    x: np.ndarray  # (N, C) in the order of Dataset.channels
    row_labels: np.ndarray | None  # per-row labels ('label' column), if any


@dataclasses.dataclass(frozen=True)
class Dataset:
    root: Path
    channels: tuple[str, ...]
    classes: tuple[str, ...]  # classification labels; ("normal", "anomaly") for anomaly data
    anomaly: bool
    recordings: tuple[Recording, ...]

    @property
    def sources(self) -> list[str]:
        return sorted({r.source for r in self.recordings})


def source_of(path: Path) -> str:
    return path.stem.split("-", 1)[0]


def read_csv(path: Path, channels: tuple[str, ...] | None = None) -> tuple[tuple[str, ...], np.ndarray, np.ndarray,
                                                                          np.ndarray | None]:
    """(channel names, t, x, row labels) of one recording; a missing or extra channel names itself."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"recording {path}: cannot read ({e})") from None
    if len(rows) < 2:
        raise ConfigError(f"recording {path}: no samples (a header line and at least one row are needed)")
    header = [h.strip() for h in rows[0]]
    if TIME_COLUMN not in header:
        raise ConfigError(f"recording {path}: no '{TIME_COLUMN}' column (seconds) in the header {header}")
    names = tuple(h for h in header if h not in (TIME_COLUMN, LABEL_COLUMN))
    if channels is not None:
        missing = [c for c in channels if c not in names]
        extra = [c for c in names if c not in channels]
        if missing:
            raise ConfigError(f"recording {path}: missing channel '{missing[0]}' (expected {', '.join(channels)})")
        if extra:
            raise ConfigError(f"recording {path}: extra channel '{extra[0]}' (expected {', '.join(channels)})")
        names = channels
    cols = [header.index(n) for n in names]
    ti = header.index(TIME_COLUMN)
    li = header.index(LABEL_COLUMN) if LABEL_COLUMN in header else None
    body = [r for r in rows[1:] if r]
    try:
        t = np.array([float(r[ti]) for r in body], np.float64)
        x = np.array([[float(r[c]) for c in cols] for r in body], np.float64)
    except (ValueError, IndexError):
        raise ConfigError(f"recording {path}: a row is not numbers in every channel column") from None
    labels = np.array([r[li].strip() for r in body]) if li is not None else None
    return names, t, x, labels


def scan(root: Path) -> Dataset:
    if not root.is_dir():
        raise ConfigError(f"data {root}: not a folder")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    names = [p.name for p in folders]
    anomaly = NORMAL in names and all(n in (NORMAL, ANOMALY) for n in names)
    if not folders or (not anomaly and len(folders) < 2):
        raise ConfigError(f"data {root}: expected one sub-folder of CSV recordings per class (at least two), "
                          f"or '{NORMAL}/' (and optionally '{ANOMALY}/') for an anomaly model")
    channels: tuple[str, ...] | None = None
    recs: list[Recording] = []
    for folder in folders:
        files = sorted(folder.glob("*.csv"))
        if not files:
            raise ConfigError(f"data {folder}: no .csv recordings in it")
        for f in files:
            names_f, t, x, lab = read_csv(f, channels)
            channels = names_f
            recs.append(Recording(f, source_of(f), folder.name, t, x, lab))
    assert channels is not None
    classes = (NORMAL, ANOMALY) if anomaly else tuple(names)
    return Dataset(root, channels, classes, anomaly, tuple(recs))


@dataclasses.dataclass(frozen=True)
class SourceSplit:
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]

    def of(self, source: str) -> str:
        return "train" if source in self.train else "val" if source in self.val else "test"


def split_sources(sources: list[str], seed: int, val: float, test: float) -> SourceSplit:
    """Whole sources to each part (at least one each when there are three or more)."""
    if len(sources) < 3:
        raise ConfigError(f"only {len(sources)} source(s) ({', '.join(sources)}): need at least 3 to hold out "
                          "validation and test sources (name files <source>-<n>.csv)")
    order = [sources[i] for i in np.random.default_rng([seed, 11]).permutation(len(sources))]
    n_test = max(1, round(test * len(sources)))
    n_val = max(1, round(val * len(sources)))
    if n_test + n_val >= len(sources):
        n_test, n_val = 1, 1
    return SourceSplit(tuple(sorted(order[n_test + n_val:])), tuple(sorted(order[n_test:n_test + n_val])),
                       tuple(sorted(order[:n_test])))


@dataclasses.dataclass
class Windows:
    raw: np.ndarray  # (M, W, C)
    y: np.ndarray  # (M,) class indices (anomaly: 0 normal, 1 anomaly)
    sources: list[str]


def windows_of(recs: list[Recording], spec: series.SeriesSpec, classes: tuple[str, ...], anomaly: bool) -> Windows:
    """Every recording through the agent's own resampler and windower; a window's label is its
    folder, or (anomaly recordings) the 'label' of its last row (anything but 'normal' is anomalous)."""
    raws, ys, srcs = [], [], []
    for r in recs:
        w, _, row_labels = series.recording_windows(r.t, r.x, spec, r.row_labels)
        if not len(w):
            continue
        if anomaly:
            if r.row_labels is not None:
                y = np.array([0 if lab == NORMAL else 1 for lab in row_labels])
            else:
                y = np.full(len(w), 0 if r.label == NORMAL else 1)
        else:
            y = np.full(len(w), classes.index(r.label))
        raws.append(w)
        ys.append(y)
        srcs += [r.source] * len(w)
    if not raws:
        return Windows(np.zeros((0, spec.window, len(spec.channels)), np.float32), np.zeros(0, np.int64), [])
    return Windows(np.concatenate(raws), np.concatenate(ys).astype(np.int64), srcs)


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve (the Mann-Whitney statistic, ties counted half)."""
    pos, neg = scores[positive.astype(bool)], scores[~positive.astype(bool)]
    if not len(pos) or not len(neg):
        return None
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order), np.float64)
    allv = np.concatenate([pos, neg])[order]
    # average ranks over ties
    _, start, counts = np.unique(allv, return_index=True, return_counts=True)
    avg = start + (counts - 1) / 2.0 + 1
    ranks[order] = np.repeat(avg, counts)
    r_pos = ranks[: len(pos)].sum()
    return float((r_pos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))
