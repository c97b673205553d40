"""The bench (tools/bench.py, edge_agent/bench/) on the tiny test models: it runs, its reports
carry every field, its statistics are ordered. Never speed: a shared CI machine cannot promise any."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.helpers import REPO, Broker

STATS = ("n", "min", "mean", "std", "p50", "p90", "p99", "max")
MACHINE = ("cpu", "arch", "cores", "cores_usable", "board", "governor", "temperature_c", "throttled", "load_avg",
           "os", "python", "interpreter", "numpy", "opencv")
MODEL = ("path", "name", "bytes", "sha256", "input", "outputs", "precision", "params", "macs", "float_tensors",
         "ops", "accuracy")
TOP = ("schema", "mode", "title", "created", "duration_s", "command", "machine", "machine_after", "models",
       "settings", "results", "targets", "warnings")
STAGES = ("capture", "resize", "wait", "preprocess", "invoke", "postprocess", "publish")
BASELINE_STAGES = ("capture", "preprocess", "invoke", "postprocess", "publish")


@pytest.fixture(scope="module")
def bench() -> SimpleNamespace:
    """The bench's entry point and the helpers the tests look at, from the package's modules."""
    from edge_agent.bench import cli, common

    return SimpleNamespace(run=cli.run, MODES=cli.MODES, summarize=common.summarize,
                           machine_warnings=common.machine_warnings, STARTUP_FRAMES=common.STARTUP_FRAMES)


def test_tools_bench_is_the_package_entry_point() -> None:
    result = subprocess.run([sys.executable, str(REPO / "tools" / "bench.py"), "--help"], capture_output=True,
                            text=True, timeout=60, cwd="/")
    assert result.returncode == 0, result.stderr
    from edge_agent.bench import cli

    assert "{" + ",".join(sorted(cli.MODES)) + "}" in result.stdout  # every mode, from the package's table
    assert {"invoke", "pipeline", "audio", "peer", "sensor", "all"} <= set(cli.MODES)


def assert_stats(stats: dict[str, Any], n: int | None = None) -> None:
    assert set(STATS) <= set(stats), stats
    assert stats["min"] <= stats["p50"] <= stats["p90"] <= stats["p99"] <= stats["max"], stats
    assert stats["min"] <= stats["mean"] <= stats["max"] and stats["std"] >= 0
    if n is not None:
        assert stats["n"] == n


def assert_report(report: dict[str, Any], mode: str) -> None:
    assert set(TOP) <= set(report), set(TOP) - set(report)
    assert report["schema"] == "edge-agent/bench@1" and report["mode"] == mode
    assert set(MACHINE) <= set(report["machine"]), set(MACHINE) - set(report["machine"])
    assert report["machine"]["interpreter"]["package"] and report["machine"]["cores"] >= 1
    for info in report["models"].values():
        assert set(MODEL) <= set(info), set(MODEL) - set(info)
        assert info["bytes"] > 0 and info["params"] > 0 and info["macs"] > 0


def test_invoke_reports_first_invoke_percentiles_and_fps(bench: SimpleNamespace, int8_model: Path,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "invoke.json"
    report = bench.run(["invoke", "--model", str(int8_model), "--threads", "1,2", "--runs", "30", "--warmup", "2",
                        "--json", str(out), "--csv", str(tmp_path / "invoke.csv"), "--quiet"])
    assert json.loads(out.read_text()) == report  # the file is the report, JSON-clean
    assert_report(report, "invoke")
    rows = report["results"]["invoke"]
    assert [r["threads"] for r in rows] == [1, 2]
    for r in rows:
        assert {"model", "precision", "threads", "delegate", "load_ms", "first_ms", "warmup", "latency_ms",
                "fps"} <= set(r)
        assert r["precision"] == "int8" and r["delegate"] == "cpu" and r["first_ms"] > 0
        assert_stats(r["latency_ms"], n=30)
        assert r["fps"] == pytest.approx(1000 / r["latency_ms"]["mean"], rel=1e-3)
    with (tmp_path / "invoke.csv").open() as f:
        paths = [row["path"] for row in csv.DictReader(f)]
    assert "results.invoke[0].latency_ms" in paths and "results.invoke[1].fps" in paths


def test_all_runs_pipeline_baseline_startup_and_evaluates_targets(bench: SimpleNamespace, int8_model: Path, video: Path,
                                                                  tmp_path: Path) -> None:
    report = bench.run(["all", "--model", str(int8_model), "--source", str(video), "--runs", "20", "--warmup", "3",
                        "--startup-repeats", "1", "--camera-fps", "60", "--json", str(tmp_path / "all.json"),
                        "--plot", str(tmp_path / "all.png"), "--quiet"])
    assert_report(report, "all")
    res = report["results"]
    for kind in ("pipeline", "pipeline_camera"):
        (pipe,) = res[kind]
        assert pipe["frames"] == 20 and pipe["fps"] > 0 and pipe["published"] == 23
        assert set(STAGES) <= set(pipe["stages"])
        for stage in STAGES:
            assert_stats(pipe["stages"][stage])
        assert_stats(pipe["latency_ms"], n=20)
        assert pipe["source"]["size"] == [640, 480]
    assert res["pipeline_camera"][0]["camera_fps"] == 60
    (base,) = res["baseline"]
    assert base["frames"] == 20 and set(BASELINE_STAGES) <= set(base["stages"])
    for stage in BASELINE_STAGES:
        assert_stats(base["stages"][stage], n=20)
    (start,) = res["startup"]
    assert start["samples"][0]["predictions"] == bench.STARTUP_FRAMES
    assert 0 < start["first_prediction_s"]["median"] < start["samples"][0]["total_s"] + 1e-9
    assert 10 < start["peak_rss_mb"]["max"] < 2000  # the agent's own, not this process's inherited peak
    (rnd,) = res["rounds"]
    assert rnd["pipeline_vs_invoke"] == pytest.approx(rnd["pipeline_fps"] / rnd["invoke_fps"], rel=1e-3)
    names = {t["name"] for t in report["targets"]}
    assert len(names) == 5
    for t in report["targets"]:  # each verdict is the comparison its target states, on its value
        op, _, limit = t["target"].partition(" ")
        assert op in (">=", "<=") and t["met"] is ((t["value"] >= float(limit)) if op == ">=" else
                                                   (t["value"] <= float(limit))), t
    assert (tmp_path / "all.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pipeline_through_a_real_broker_measures_delivery(bench: SimpleNamespace, int8_model: Path, video: Path,
                                                          broker: Broker) -> None:
    report = bench.run(["pipeline", "--model", str(int8_model), "--source", str(video), "--runs", "15",
                        "--warmup", "2", "--mqtt-host", broker.host, "--mqtt-port", str(broker.port), "--quiet"])
    (pipe,) = report["results"]["pipeline"]
    assert pipe["sink"].startswith("mqtt") and pipe["published"] == 17
    assert pipe["delivered"] == 17
    assert_stats(pipe["delivered_ms"], n=15)


def test_compare_pairs_float_with_int8_and_reads_accuracy_from_manifests(bench: SimpleNamespace, model_dir: Path,
                                                                         tmp_path: Path) -> None:
    from edge_agent import manifest as manifest_mod

    models = []
    for name, metrics in (("tiny_float32", {"top1": 0.9}), ("tiny_int8", {"int8": {"top1": 0.87}})):
        src = model_dir / f"{name}.tflite"
        dst = tmp_path / src.name
        dst.write_bytes(src.read_bytes())
        m = manifest_mod.load(manifest_mod.manifest_path_for(src))
        manifest_mod.write(manifest_mod.Manifest(m.name, m.task, m.labels, m.sha256, dst.name, m.input,
                                                 metrics=metrics), manifest_mod.manifest_path_for(dst))
        models += ["--model", str(dst)]
    report = bench.run(["compare", *models, "--threads", "1", "--runs", "10", "--warmup", "1", "--quiet",
                        "--plot", str(tmp_path / "compare.png")])
    assert_report(report, "compare")
    rows = report["results"]["compare"]["rows"]
    assert [r["precision"] for r in rows] == ["float", "int8"] and rows[0]["speed_vs_first"] == 1.0
    (pair,) = report["results"]["compare"]["int8_vs_float"]
    assert pair["speedup"] == pytest.approx(rows[0]["latency_ms"]["mean"] / rows[1]["latency_ms"]["mean"], rel=1e-2)
    assert pair["top1_change_points"] == pytest.approx(-3.0)
    assert "faster" in pair["summary"] and "-3.00 points" in pair["summary"]


def test_summarize_orders_percentiles_and_handles_no_samples(bench: SimpleNamespace) -> None:
    assert_stats(bench.summarize([5.0, 1.0, 9.0, 3.0, 100.0]), n=5)
    assert bench.summarize([])["n"] == 0


def test_audio_runs_the_voice_agent_through_the_run_loop(bench: SimpleNamespace, tmp_path: Path) -> None:
    report = bench.run(["audio", "--model", str(REPO / "models" / "voice.tflite"), "--runs", "40", "--warmup", "4",
                        "--json", str(tmp_path / "audio.json"), "--quiet"])
    assert report["mode"] == "audio" and {"invoke", "pipeline", "audio", "all"} <= set(bench.MODES)
    (row,) = report["results"]["audio"]
    assert row["hops"] == 40 and row["hops_per_s"] > 0 and row["real_time_factor"] > 0
    assert_stats(row["stages"]["infer"], n=40)
    assert_stats(row["stages"]["wait"], n=40)
    assert_stats(row["latency_ms"], n=40)
    assert json.loads((tmp_path / "audio.json").read_text())["results"]["audio"][0]["hops"] == 40


def test_governor_other_than_performance_is_warned_about(bench: SimpleNamespace) -> None:
    machine = {"governor": "ondemand", "throttled": "0x50005", "load_avg": [0.0, 0.0, 0.0], "cores": 4}
    warnings = bench.machine_warnings(machine)
    assert any("ondemand" in w and "performance" in w for w in warnings)
    assert any("throttl" in w for w in warnings)
    assert not any("governor" in w for w in bench.machine_warnings({**machine, "governor": "performance"}))


def test_peer_runs_the_agent_command_line_against_the_tutorial_loop(bench: SimpleNamespace, int8_model: Path,
                                                                   video: Path) -> None:
    report = bench.run(["peer", "--model", str(int8_model), "--source", str(video), "--runs", "12",
                        "--threads", "1", "--workers", "1,2", "--quiet"])
    peer = report["results"]["peer"]
    assert peer["cores"] >= 1 and peer["frames"] == 12 and len(peer["rounds"]) == 1
    (row,) = peer["rounds"]
    assert {"decode", "invoke_1_thread", "tutorial_t1", "agent_t1_w1", "agent_t1_w2"} <= set(row)
    assert row["limit_fps"] == pytest.approx(
        peer["cores"] * 1000 / (row["decode"]["cpu_ms"] + row["invoke_1_thread"]["cpu_ms"]), rel=1e-6)
    for name in ("agent_t1_w1", "agent_t1_w2"):
        summary = peer["agents"][name]
        # one round: the summary's medians are that round's figures (rounded to 4 places)
        assert summary["fps"]["median"] == pytest.approx(row[name]["fps"], abs=1e-4)
        assert summary["vs_tutorial"]["median"] == pytest.approx(row[name]["fps"] / row["tutorial_t1"]["fps"],
                                                                 abs=1e-4)
        assert row[name]["cpu_ms"] > 0


def test_gate_measures_a_still_scene_with_and_without_the_gate(bench: SimpleNamespace, int8_model: Path) -> None:
    """The gate mode runs the agent twice on a camera-paced still scene that changes at a known
    frame: every field is there, and the gated run's change frame carries that frame's own scores
    (a property of the gate, not a speed)."""
    report = bench.run(["gate", "--model", str(int8_model), "--runs", "30", "--camera-fps", "15", "--quiet"])
    gate = report["results"]["gate"]
    (row,) = gate["rounds"]
    for side, level in (("off", 0.0), ("on", 2.0)):
        r = row[side]
        assert r["gate"] == level and r["core_pct"] > 0 and r["still_frames"] == 30 - 10
        assert r["change"]["seq"] == 30 and r["change"]["published"] and r["change"]["latency_ms"] > 0
        assert r["still_latency_ms_p50"] > 0
    assert row["on"]["change"]["scores_changed"] == gate["change_scores_changed"]
    assert gate["core_pct_on"]["rounds"] == 1 and gate["on_vs_off"]["median"] > 0
