"""Generate SYNTHETIC demo recordings for the sensor tasks (activity, machine, intrusion, location).

Nothing here is measured data: every file is made by a small physical or statistical model so the
whole pipeline (train-series → int8 → agent) can be shown and tested without downloading
anything. The files say so in their folder's README.txt. Each recording is a CSV with a header
``t,<channel>,...[,label]`` (``t`` in seconds), laid out as ``train-series`` reads it::

    OUT/activity/<class>/<subject>-<n>.csv          3-axis accelerometer, 50 Hz, six classes
    OUT/location/<room>/<day>-<n>.csv               RSSI of 5 access points, 1 Hz, five rooms
    OUT/machine/normal/<machine>-<n>.csv            vibration + temperature, 100 Hz, healthy only
    OUT/machine/anomaly/<machine>-<n>.csv           a developing bearing fault, label per row
    OUT/intrusion/normal/<network>-<n>.csv          one network flow per row (rate 0: event data)
    OUT/intrusion/anomaly/<network>-<n>.csv         scans, floods and brute force mixed in, label per row

The part before ``-`` in a file name is its SOURCE (a simulated subject, day, machine or network):
``train-series`` splits train / validation / test by source, so test figures come from subjects,
days, machines or networks the model never saw.

    python tools/gen_sensor_data.py --out data/sensors [--tasks activity,machine] [--seed 0]
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import numpy as np

G: Final = 9.81  # m/s²
ACTIVITY_SHARE: Final = {  # the course's class distribution (chapter 6-1)
    "walking": 0.386, "jogging": 0.312, "upstairs": 0.112, "downstairs": 0.091, "sitting": 0.055, "standing": 0.044,
}
ACTIVITY_RATE_HZ: Final = 50
ACTIVITY_SUBJECTS: Final = 12
ACTIVITY_SECONDS_PER_SUBJECT: Final = 160
ROOMS: Final = {"kitchen": (2.0, 2.0), "living": (7.0, 2.5), "bedroom": (2.5, 7.5), "bathroom": (6.0, 7.0),
                "office": (9.5, 7.5)}  # room centre (m) in a 12 x 10 m flat
ROOM_HALF_SIZE_M: Final = 1.5
APS: Final = ((0.5, 0.5), (11.0, 1.0), (6.0, 5.0), (1.0, 9.5), (11.5, 9.5))  # access points (m)
MACHINE_RATE_HZ: Final = 100
INTRUSION_CHANNELS: Final = ("log_duration", "log_packets", "log_bytes_per_packet", "log_dst_ports", "syn_ratio",
                             "log_failed_auth", "log_rate_pps")
README: Final = """SYNTHETIC DATA made by tools/gen_sensor_data.py (seed {seed}); not measurements.
Each CSV is one recording: t (seconds), the channels, and for anomaly recordings a label per row.
The part of a file name before '-' is its source (subject, day, machine or network).
"""


def write_csv(path: Path, header: Sequence[str], columns: Sequence[np.ndarray], decimals: int = 4) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        rows = zip(*columns, strict=True)
        for row in rows:
            w.writerow([v if isinstance(v, str) else f"{float(v):.{decimals}f}" for v in row])


def _rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    a, b, c = np.deg2rad(rng.uniform(-max_deg, max_deg, 3))
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def activity_signal(kind: str, seconds: float, rng: np.random.Generator, subject: dict[str, float]) -> np.ndarray:
    """(N, 3) body-frame acceleration in m/s² (phone in a trouser pocket: y along the thigh)."""
    n = int(seconds * ACTIVITY_RATE_HZ)
    t = np.arange(n) / ACTIVITY_RATE_HZ
    gait = {"walking": (1.9, 2.6, 0.0), "jogging": (2.8, 7.5, 0.0), "upstairs": (1.5, 2.2, 18.0),
            "downstairs": (2.1, 3.6, -12.0)}
    x = np.zeros((n, 3))
    if kind in gait:
        f, amp, tilt = gait[kind]
        f *= subject["cadence"] * (1 + 0.03 * rng.standard_normal())
        amp *= subject["strength"]
        phase = 2 * np.pi * f * t + 0.3 * np.sin(2 * np.pi * 0.1 * t)  # slowly varying stride
        shape = 2.2 if kind == "downstairs" else 1.0  # sharper heel strikes going down
        vertical = amp * (np.sin(phase) + 0.35 * shape * np.sin(2 * phase + 0.5))
        forward = 0.5 * amp * np.sin(phase + 1.2) + (0.6 * amp if kind == "upstairs" else 0.0) * np.sin(2 * phase)
        lateral = 0.25 * amp * np.sin(0.5 * phase)
        th = np.deg2rad(tilt + subject["lean"])
        x[:, 0] = lateral
        x[:, 1] = G * np.cos(th) + vertical
        x[:, 2] = G * np.sin(th) + forward
    elif kind == "standing":
        sway = 0.15 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 6))
        x[:, 1] = G + sway
        x[:, 2] = 0.4 + 0.2 * sway
    else:  # sitting: the thigh is horizontal, gravity along z
        x[:, 1] = 1.2 + 0.05 * np.sin(2 * np.pi * 0.2 * t)
        x[:, 2] = G * 0.98
    x += subject["noise"] * rng.standard_normal((n, 3))
    return x @ subject["rotation"].T


def gen_activity(out: Path, rng: np.random.Generator) -> int:
    files = 0
    for s in range(1, ACTIVITY_SUBJECTS + 1):
        subject = {"cadence": rng.uniform(0.88, 1.12), "strength": rng.uniform(0.8, 1.25),
                   "lean": rng.uniform(-6, 6), "noise": rng.uniform(0.15, 0.35),
                   "rotation": _rotation(rng, 15)}
        for kind, share in ACTIVITY_SHARE.items():
            seconds = ACTIVITY_SECONDS_PER_SUBJECT * share
            x = activity_signal(kind, seconds, rng, subject)
            t = np.arange(len(x)) / ACTIVITY_RATE_HZ
            write_csv(out / kind / f"subj{s:02d}-1.csv", ("t", "ax", "ay", "az"), (t, x[:, 0], x[:, 1], x[:, 2]), 3)
            files += 1
    return files


def rssi(pos: np.ndarray, rng: np.random.Generator, day_offset: np.ndarray) -> np.ndarray:
    """Log-distance path loss (exponent 3), a wall loss between rooms, and Rayleigh fading in dB."""
    out = np.zeros((len(pos), len(APS)))
    for j, ap in enumerate(APS):
        d = np.maximum(0.5, np.hypot(pos[:, 0] - ap[0], pos[:, 1] - ap[1]))
        walls = np.floor(np.abs(pos[:, 0] - ap[0]) / 4.0) + np.floor(np.abs(pos[:, 1] - ap[1]) / 4.0)
        fading_db = 10 * np.log10(np.maximum(rng.exponential(1.0, len(pos)), 1e-3))  # Rayleigh power in dB
        out[:, j] = -40 - 30 * np.log10(d) - 4.0 * walls + 0.8 * fading_db + day_offset[j]
    return np.clip(out, -100, -30)


def gen_location(out: Path, rng: np.random.Generator, days: int = 10, stays_per_room: int = 2) -> int:
    files = 0
    for day in range(1, days + 1):
        day_offset = rng.normal(0, 2.0, len(APS))  # AP power and furniture differ from day to day
        for room, (cx, cy) in ROOMS.items():
            for k in range(stays_per_room):
                seconds = int(rng.integers(40, 90))
                walk = np.cumsum(rng.normal(0, 0.25, (seconds, 2)), axis=0)
                pos = np.array([cx, cy]) + np.clip(walk, -ROOM_HALF_SIZE_M, ROOM_HALF_SIZE_M)
                r = rssi(pos, rng, day_offset)
                t = np.arange(seconds, dtype=np.float64)
                write_csv(out / room / f"day{day:02d}-{k + 1}.csv", ("t", *[f"ap{j + 1}" for j in range(len(APS))]),
                          (t, *[r[:, j] for j in range(len(APS))]), 1)
                files += 1
    return files


def machine_signal(seconds: float, rng: np.random.Generator, m: dict[str, float],
                   severity: Callable[[np.ndarray], np.ndarray] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = int(seconds * MACHINE_RATE_HZ)
    t = np.arange(n) / MACHINE_RATE_HZ
    f = m["shaft_hz"]
    vib = m["amp"] * (np.sin(2 * np.pi * f * t) + 0.3 * np.sin(4 * np.pi * f * t + 0.7))
    vib += m["noise"] * rng.standard_normal(n)
    temp = m["ambient"] + 8.0 * (1 - np.exp(-t / 40.0)) + 0.05 * rng.standard_normal(n)
    sev = np.zeros(n) if severity is None else severity(t)
    if severity is not None:
        # outer-race defect: an impulse each 1 / (3.6 f) s, ringing for a few samples, growing with severity
        period = MACHINE_RATE_HZ / (3.6 * f)
        hits = np.zeros(n)
        hits[(np.arange(0, n, period)).astype(int)] = 1.0
        ring = np.exp(-np.arange(6) / 1.5) * np.cos(np.arange(6) * 2.4)
        impulses = np.convolve(hits, ring)[:n]
        vib += sev * 4.0 * m["amp"] * impulses * (1 + 0.3 * rng.standard_normal(n))
        vib += sev * 0.6 * m["noise"] * rng.standard_normal(n)
        temp += 6.0 * sev
    return t, np.stack([vib, temp], axis=1), sev


def gen_machine(out: Path, rng: np.random.Generator, machines: int = 10) -> int:
    files = 0
    for i in range(1, machines + 1):
        m = {"shaft_hz": rng.uniform(8, 14), "amp": rng.uniform(0.8, 1.4), "noise": rng.uniform(0.15, 0.3),
             "ambient": rng.uniform(22, 32)}
        for k in range(3):
            t, x, _ = machine_signal(60, rng, m, None)
            write_csv(out / "normal" / f"m{i:02d}-{k + 1}.csv", ("t", "vib", "temp"), (t, x[:, 0], x[:, 1]), 3)
            files += 1
        onset = rng.uniform(15, 30)
        t, x, sev = machine_signal(90, rng, m, lambda t, onset=onset: np.clip((t - onset) / 50.0, 0, 1) ** 1.5)
        labels = np.where(sev > 0.05, "fault", "normal")
        write_csv(out / "anomaly" / f"m{i:02d}-fault.csv", ("t", "vib", "temp", "label"),
                  (t, x[:, 0], x[:, 1], labels), 3)
        files += 1
    return files


def flows(kind: str, n: int, rng: np.random.Generator, net: dict[str, float]) -> np.ndarray:
    """(n, 7) flow features (log1p of counts) for one kind of traffic."""
    if kind == "normal":
        dur = rng.lognormal(net["dur"], 1.0, n)
        pk = rng.lognormal(net["pk"], 1.0, n)
        bpp = rng.normal(net["bpp"], 250, n).clip(60, 1500)
        ports = rng.choice([1, 1, 1, 2, 3], n)
        syn = rng.beta(1.5, 12, n)
        failed = (rng.random(n) < 0.02).astype(float)
    elif kind == "scan":
        dur = rng.lognormal(0.0, 0.7, n)
        pk = rng.lognormal(4.0, 0.6, n)
        bpp = rng.normal(62, 6, n)
        ports = rng.lognormal(4.5, 0.8, n)
        syn = rng.beta(12, 2, n)
        failed = np.zeros(n)
    elif kind == "flood":
        dur = rng.lognormal(1.5, 0.5, n)
        pk = rng.lognormal(8.5, 0.7, n)
        bpp = rng.normal(70, 15, n)
        ports = np.ones(n)
        syn = rng.beta(14, 1.5, n)
        failed = np.zeros(n)
    else:  # brute force against ssh or a web login
        dur = rng.lognormal(3.0, 0.6, n)
        pk = rng.lognormal(5.0, 0.5, n)
        bpp = rng.normal(180, 40, n)
        ports = np.ones(n)
        syn = rng.beta(3, 8, n)
        failed = rng.lognormal(3.0, 0.7, n)
    rate = pk / np.maximum(dur, 0.05)
    cols = [np.log1p(dur), np.log1p(pk), np.log1p(bpp), np.log1p(ports), syn, np.log1p(failed), np.log1p(rate)]
    return np.stack(cols, axis=1)


def gen_intrusion(out: Path, rng: np.random.Generator, networks: int = 8, normal_flows: int = 1200) -> int:
    files = 0
    header = ("t", *INTRUSION_CHANNELS)
    for i in range(1, networks + 1):
        net = {"dur": rng.uniform(0.5, 1.5), "pk": rng.uniform(2.0, 3.5), "bpp": rng.uniform(400, 900)}
        x = flows("normal", normal_flows, rng, net)
        t = np.cumsum(rng.exponential(0.5, len(x)))
        write_csv(out / "normal" / f"net{i:02d}-1.csv", header, (t, *x.T))
        kinds = rng.choice(["normal", "scan", "flood", "bruteforce"], 600, p=[0.7, 0.1, 0.1, 0.1])
        rows = np.concatenate([flows(str(k), 1, rng, net) for k in kinds])
        t = np.cumsum(rng.exponential(0.5, len(rows)))
        write_csv(out / "anomaly" / f"net{i:02d}-attacks.csv", (*header, "label"), (t, *rows.T, kinds))
        files += 2
    return files


GENERATORS: Final = {"activity": gen_activity, "location": gen_location, "machine": gen_machine,
                     "intrusion": gen_intrusion}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Generate SYNTHETIC sensor recordings for the demo tasks.")
    p.add_argument("--out", type=Path, required=True, help="output folder (one sub-folder per task)")
    p.add_argument("--tasks", default=",".join(GENERATORS), help="comma-separated: " + ", ".join(GENERATORS))
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    for task in a.tasks.split(","):
        if task not in GENERATORS:
            p.error(f"unknown task '{task}' (choose from {', '.join(GENERATORS)})")
        folder = a.out / task
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "README.txt").write_text(README.format(seed=a.seed))
        n = GENERATORS[task](folder, np.random.default_rng([a.seed, list(GENERATORS).index(task)]))
        print(f"{task}: {n} synthetic recordings in {folder}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
