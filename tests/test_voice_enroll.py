"""The three loops a person runs to fit voice commands to a room and a voice: near-miss capture,
enrollment (on the Pi: no TensorFlow), room calibration.

Everything runs on a fixed head (weights set in code from the shipped front end's own vectors, no
training), so these tests check the loops' mechanics: what is kept, in which layout, what the
enrolled model's manifest says, what the config says after calibration. The one outcome checked
is the point of the loop: a sound the head scored just under its threshold ("off" played as a tone
the head half-knows) is, after capture → enroll, announced. Enrollment is a deterministic fit (numpy,
fixed seed) on the int8 model's own features, with a wide margin on this head."""

from __future__ import annotations

import csv
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge_agent import manifest as manifest_mod
from edge_agent.hub import ControlError, parse_command
from edge_agent.sources.wav import write_wav
from edge_agent.voice import embedding as emb
from edge_agent.voice.embedding import EmbeddingSpec, FrontEnd
from edge_agent.voice.recognizer import RecognizerSettings
from tests.helpers import REPO, Broker, Subscriber, eventually, run_agent, running, start_agent
from tests.test_voice_mic import voice_agent_on, wait_for_line
from tests.voice_helpers import QUIET, SINK_RATE_HZ, pulse_server, quiet, tone_word, window_with

LABELS = ("yes", "no", "on", "off", "stop", "_silence_", "_unknown_")
WORDS = {"yes": "yes"}  # label → tone word the head knows well
HALF_KNOWN = "off"  # its tone scores 0.5 for "off" and 0.5 for "_unknown_": under the threshold, a near miss
THRESHOLD = 0.6
RATE = emb.SAMPLE_RATE_HZ


def build_half_head(path: Path) -> Path:
    """A full-int8 head converted by train-voice's own conversion: nearest prototype (the mean
    embedding of each known tone, and of the quiet floor for ``_silence_``) as a linear layer,
    centred so logits stay tens apart. "off" and ``_unknown_`` have the same prototype, the "off"
    tone, so on it each scores exactly 0.5 whatever the noise (the same int8 weights): a near miss
    at the threshold 0.6."""
    if path.exists():
        return path
    import warnings

    from edge_agent.convert import _tf
    from edge_agent.convert.voice.model import convert

    spec = EmbeddingSpec()
    front = FrontEnd.load()
    mean_of = {w: emb.embeddings(front, window_with(w, 1)).mean(axis=0) for w in (*WORDS.values(), HALF_KNOWN)}
    protos = {label: mean_of[w] for label, w in WORDS.items()}
    protos["_silence_"] = emb.embeddings(front, window_with(None, 1)).mean(axis=0)
    protos["off"] = protos["_unknown_"] = mean_of[HALF_KNOWN]
    centre = np.mean(list(protos.values()), axis=0)
    spread = max(float(((p - centre) ** 2).sum()) for p in protos.values())
    gain = 40.0 / spread
    w = np.zeros((*spec.shape, 1, len(LABELS)), np.float32)
    b = np.zeros(len(LABELS), np.float32)

    for i, label in enumerate(LABELS):
        if label in protos:
            p = protos[label] - centre
            w[:, :, 0, i] = gain * p / spec.embeddings
            b[i] = -gain * float(p @ centre) - gain * float(p @ p) / 2
    absent = [i for i, label in enumerate(LABELS) if label not in protos]
    b[absent] = float(b.min()) - 30.0
    keras = _tf.keras()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inp = keras.Input((*spec.shape, 1))
        x = keras.layers.Conv2D(len(LABELS), spec.shape, use_bias=True)(inp)
        x = keras.layers.Flatten()(x)
        model = keras.Model(inp, keras.layers.Softmax()(x), name="half_head")
    model.layers[1].set_weights([w, b])
    calib = np.stack([emb.embeddings(front, window_with(word, s))
                      for word in (None, "yes", "on", "no", HALF_KNOWN, "tree") for s in range(3)])
    _, int8_bytes, _ = convert(model, spec.shape, calib)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(int8_bytes)
    from edge_agent.voice.head import read_last_layer

    # what a shipped model carries for enrollment: its float last layer, and windows it has heard
    # with what it said about them (here: every window over a "yes" in the room, labelled by the head)
    layer = read_last_layer(path)
    weights = w[:, :, 0, :].reshape(-1, len(LABELS)).T
    heard = np.concatenate([quiet(3 * RATE, 40), tone_word("yes"), quiet(2 * RATE, 41)])
    vectors = emb.embeddings(front, heard)
    windows = np.stack([vectors[i - spec.embeddings: i] for i in range(spec.embeddings, len(vectors) + 1)])
    feats = layer.features(windows)
    said = (feats @ weights.T + b).argmax(axis=1)
    anchor = {LABELS[c]: np.round(feats[said == c], 4).tolist() for c in sorted(set(said.tolist()))}
    manifest = manifest_mod.Manifest(
        name="half-head", task="voice", labels=LABELS, sha256=manifest_mod.sha256_file(path),
        model_file=path.name, audio={k: v for k, v in spec.to_json().items() if k != "kind"},
        provenance={"made_by": "tests/test_voice_enroll.py build_half_head"}, metrics={},
        extra={"recognizer": RecognizerSettings(stride_ms=80, average_window_ms=240, threshold=THRESHOLD,
                                                min_count=2, suppression_ms=2000).to_json(),
               "enroll": {"layer": "last", "weights": weights.tolist(), "bias": b.tolist(), "anchors": anchor}},
        output=manifest_mod.OUTPUT_LOGITS)
    manifest_mod.write(manifest, manifest_mod.manifest_path_for(path))
    return path


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_half_head(tmp_path_factory.mktemp("half") / "head.tflite")


def stream(path: Path, words: list[str], lead_s: float = 12.0, gap_s: float = 2.6, seed: int = 5) -> list[float]:
    """Quiet room (``lead_s``: enough for one room chunk), then the tone words; their start times."""
    parts = [quiet(int(lead_s * RATE), seed)]
    starts, pos = [], len(parts[0])
    for i, w in enumerate(words):
        x = tone_word(w) + quiet(len(tone_word(w)), seed + i + 1)
        starts.append(pos / RATE)
        gap = quiet(int(gap_s * RATE), seed + 100 + i)
        parts += [x, gap]
        pos += len(x) + len(gap)
    write_wav(path, np.concatenate(parts), RATE)
    return starts


def commands_of(stdout: str) -> list[dict[str, object]]:
    return [m for m in (json.loads(line) for line in stdout.splitlines() if line.startswith("{"))
            if "command" in m]


def convert_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "edge_agent.convert", *args], capture_output=True, text=True,
                          timeout=600, env=env, cwd=REPO)


def test_near_misses_captured_are_enroll_input_and_are_heard_after_enrollment(tmp_path: Path, head: Path) -> None:
    wav = tmp_path / "room.wav"
    stream(wav, [HALF_KNOWN, "yes", HALF_KNOWN, HALF_KNOWN, HALF_KNOWN])
    captured = tmp_path / "captured"
    before = run_agent(["--task", "voice", "--model", str(head), "--source", str(wav), "--sink", "stdout",
                        "--capture", str(captured)])
    assert before.returncode == 0, before.stderr[-3000:]
    assert [c["command"] for c in commands_of(before.stdout)] == ["yes"], before.stderr[-2000:]
    with (captured / "captures.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    near = [r for r in rows if r["kind"] == "near_miss"]
    assert [r["label"] for r in near] == ["off"] * 4, rows
    assert all(THRESHOLD - 0.2 <= float(r["score"]) < THRESHOLD for r in near), near
    assert all((captured / r["file"]).is_file() and r["file"].startswith("off/") for r in near)
    assert [r["kind"] for r in rows if r["file"].startswith("_background_noise_/")] == ["room"]

    out = tmp_path / "me.tflite"
    # --no-reversed: a tone played backwards is the same tone (speech is not: reversed takes are
    # the negatives enrollment makes by default)
    result = convert_cli("enroll", "--model", str(head), "--data", str(captured), "--out", str(out), "--no-reversed")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "off: 4 of 4 of your takes heard" in result.stdout, result.stdout + result.stderr[-2000:]
    assert "false accepts in your room:" in result.stdout
    assert "training step" in result.stderr  # progress on the terminal
    base = json.loads(manifest_mod.manifest_path_for(head).read_text())
    m = json.loads(manifest_mod.manifest_path_for(out).read_text())
    assert m["sha256"] == manifest_mod.sha256_file(out) != base["sha256"]
    assert m["provenance"]["base_sha256"] == base["sha256"] and m["provenance"]["recordings"] == {"off": 4}
    tuning = m["provenance"]["threshold_tuning"]
    assert m["recognizer"]["threshold"] == tuning["threshold"] and "0.5" in tuning["false_accepts_by_threshold"]
    assert len(m["enroll"]["weights"]) == len(LABELS) and len(m["enroll"]["bias"]) == len(LABELS)
    assert m["input"] == base["input"] and m["labels"] == base["labels"] and m["output"] == "logits"

    after = run_agent(["--task", "voice", "--model", str(out), "--source", str(wav), "--sink", "stdout"])
    assert after.returncode == 0, after.stderr[-3000:]
    assert [c["command"] for c in commands_of(after.stdout)] == ["off", "yes", "off", "off", "off"]


def test_enrollment_needs_no_tensorflow(tmp_path: Path, head: Path) -> None:
    """A Pi has LiteRT and numpy: enroll on a speech-embedding model never imports TensorFlow."""
    folder = tmp_path / "me"
    for i in range(3):
        (folder / "off").mkdir(parents=True, exist_ok=True)
        write_wav(folder / "off" / f"take_{i}.wav", np.concatenate([quiet(4000, i), tone_word("off"), quiet(4000, 9)]),
                  RATE)
    (folder / "_background_noise_").mkdir()
    write_wav(folder / "_background_noise_" / "room.wav", quiet(20 * RATE, 3), RATE)
    code = ("import sys; sys.modules['tensorflow'] = None\n"
            "from edge_agent.convert.cli import main\n"
            f"sys.exit(main(['enroll', '--model', {str(head)!r}, '--data', {str(folder)!r}, '--out', "
            f"{str(tmp_path / 'me.tflite')!r}, '--steps', '20', '--no-reversed']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "me.tflite").is_file()


def test_enroll_refuses_a_folder_without_commands_or_room_sound_with_one_line(tmp_path: Path, head: Path) -> None:
    folder = tmp_path / "me"
    (folder / "tree").mkdir(parents=True)
    write_wav(folder / "tree" / "a.wav", quiet(RATE, 1), RATE)
    result = convert_cli("enroll", "--model", str(head), "--data", str(folder), "--out", str(tmp_path / "o.tflite"))
    assert result.returncode == 2 and "no recordings of any command" in result.stderr, result.stderr[-2000:]
    (folder / "off").mkdir()
    write_wav(folder / "off" / "a.wav", quiet(RATE, 1), RATE)
    result = convert_cli("enroll", "--model", str(head), "--data", str(folder), "--out", str(tmp_path / "o.tflite"))
    assert result.returncode == 2 and "_background_noise_/ with a few minutes" in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_calibrate_writes_the_operating_point_into_the_config_and_prints_the_curve(tmp_path: Path,
                                                                                    head: Path) -> None:
    wav = tmp_path / "room.wav"
    stream(wav, [HALF_KNOWN, "tree", HALF_KNOWN, HALF_KNOWN], lead_s=5.0)
    config = tmp_path / "voice.toml"
    config.write_text('device_id = "kitchen"\n\n[postprocess]\ntop_k = 2\n')
    result = run_agent(["calibrate", "--task", "voice", "--source", str(wav), "--model", str(head), "--config",
                        str(config)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "threshold  false accepts  per hour" in result.stderr and "<- chosen" in result.stderr
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith("false accepts in your room:") and f"written to {config}" in line, line
    # the half-known tone (0.5 for "off") is a false accept at a low threshold: the lowest without one is chosen
    curve = {float(r.split()[0]): int(r.split()[1]) for r in result.stderr.splitlines()
             if r[:9].strip().replace(".", "").isdigit()}
    chosen = min(th for th, n in curve.items() if n == 0)
    assert curve[0.3] >= 1 and 0.5 <= chosen <= 0.6 and f"threshold {chosen:g}" in line, result.stderr
    shown = run_agent(["--config", str(config), "--task", "voice", "--print-config"])
    assert shown.returncode == 0, shown.stderr
    assert f"threshold = {chosen}" in shown.stdout and 'device_id = "kitchen"' in config.read_text()


def test_wrong_is_a_voice_remote_control_command() -> None:
    assert parse_command(b'{"wrong": 7}', "voice").wrong == 7
    with pytest.raises(ControlError, match="unknown key 'wrong'"):
        parse_command(b'{"wrong": 7}', "waste")
    with pytest.raises(ControlError, match="'wrong' must be the seq"):
        parse_command(b'{"wrong": -1}', "voice")


def tones_at(rate: int, words: list[str], lead_s: float, gap_s: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    parts = [QUIET * rng.standard_normal(int(lead_s * rate))]
    for w in words:
        parts += [tone_word(w, rate) + QUIET * rng.standard_normal(len(tone_word(w, rate))),
                  QUIET * rng.standard_normal(int(gap_s * rate))]
    return np.concatenate(parts).astype(np.float32)


@pytest.mark.slow
def test_enroll_from_the_microphone_then_the_agent_hears_the_enrolled_word(
        tmp_path: Path, head: Path, broker: Broker) -> None:
    """Through the PulseAudio null sink: enroll --mic records the room and three takes of "off"
    (played into the sink when it prompts), enrolls, and the agent on the same microphone with the
    enrolled model announces "off" (which the head left just under its threshold before). That other
    commands keep their boundaries is the file test's to check (four takes there, three here)."""
    with pulse_server(tmp_path / "pa") as pulse:
        takes = tmp_path / "takes.wav"
        write_wav(takes, tones_at(SINK_RATE_HZ, [HALF_KNOWN] * 3, lead_s=13.0, gap_s=2.0, seed=7), SINK_RATE_HZ)
        out = tmp_path / "mine.tflite"
        env = {**os.environ, **pulse.env, "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge_agent.convert", "enroll", "--model", str(head), "--mic", "pulse",
             "--data", str(tmp_path / "me"), "--out", str(out), "--commands", "off", "--takes", "3",
             "--room-seconds", "10", "--no-reversed"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
        lines: queue.Queue[str] = queue.Queue()
        assert proc.stderr is not None
        threading.Thread(target=lambda: [lines.put(x) for x in proc.stderr], daemon=True).start()  # type: ignore[union-attr]
        seen: list[str] = []
        try:
            assert wait_for_line(lines, "of your room", 60, seen), "".join(seen)
            played = pulse.play(takes)
            assert played.returncode == 0, played.stderr
            stdout, _ = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
        while not lines.empty():
            seen.append(lines.get())
        assert proc.returncode == 0, "".join(seen[-30:])
        assert sum('say "off"' in x for x in seen) == 3 and len(list((tmp_path / "me" / "off").glob("*.wav"))) == 3
        assert "off: 3 of 3 of your takes heard" in stdout, stdout + "".join(seen[-20:])

        # 3 s of the room first: the sink's monitor is digital silence until something plays, a room never is
        words = tmp_path / "words.wav"
        write_wav(words, tones_at(SINK_RATE_HZ, [HALF_KNOWN], lead_s=3.0, gap_s=2.6, seed=8), SINK_RATE_HZ)
        sub = Subscriber(broker, "edge-agent/#")
        agent_seen: list[str] = []
        with voice_agent_on(pulse, broker, "pulse", agent_seen, out) as (agent, _):
            time.sleep(1.2)
            assert pulse.play(words).returncode == 0
            sub.wait_for("/voice/command", 1, timeout=10)
            time.sleep(1.0)  # anything more it would announce
            got = sub.payloads("/voice/command")
            agent.send_signal(signal.SIGTERM)
            assert agent.wait(15) == 0
        sub.close()
        assert [p["command"] for p in got] == ["off"], "".join(agent_seen[-20:])


def test_train_voice_writes_what_enrollment_needs_into_the_manifest(tmp_path: Path, head: Path) -> None:
    """The float last layer and a few anchors per class, so a user enrolls without the training data."""
    import shutil

    from edge_agent.convert.voice.enroll import add_enroll_block

    model = tmp_path / "m.tflite"
    shutil.copy(head, model)
    shutil.copy(manifest_mod.manifest_path_for(head), manifest_mod.manifest_path_for(model))
    front = FrontEnd.load()
    windows = np.stack([emb.embeddings(front, window_with(w, s)) for w in ("yes", None) for s in range(3)])
    y = np.array([0, 0, 0, 5, 5, 5])
    w = np.arange(len(LABELS) * 960, dtype=np.float32).reshape(len(LABELS), 960) / 1e4
    add_enroll_block(model, LABELS, w, np.ones(len(LABELS), np.float32), windows, y, per_class=2)
    block = json.loads(manifest_mod.manifest_path_for(model).read_text())["enroll"]
    assert np.allclose(block["weights"], w, atol=1e-6) and block["bias"] == [1.0] * len(LABELS)
    assert sorted(block["anchors"]) == ["_silence_", "yes"]
    assert all(len(v) == 2 and len(v[0]) == 960 for v in block["anchors"].values())


@pytest.mark.slow
def test_a_command_marked_wrong_is_kept_and_counted_in_the_metrics(tmp_path: Path, head: Path,
                                                                    broker: Broker) -> None:
    wav = tmp_path / "said.wav"
    stream(wav, ["yes"], lead_s=1.0, gap_s=9.0)
    captured = tmp_path / "captured"
    sub = Subscriber(broker, "edge-agent/#")
    proc = start_agent(["--task", "voice", "--model", str(head), "--source", str(wav), "--realtime", "--mqtt-host",
                        broker.host, "--mqtt-port", str(broker.port), "--device-id", "pi1", "--remote-control",
                        "--metrics-interval", "1", "--capture", str(captured)])
    with running(proc):
        got = sub.wait_for("/voice/command", 1, timeout=30)
        assert [p["command"] for p in got] == ["yes"]
        sub.client.publish("edge-agent/pi1/voice/set", json.dumps({"wrong": got[0]["seq"]}), qos=1)
        eventually(lambda: any(m.get("voice", {}).get("marked_wrong") == 1 for m in sub.payloads("/pi1/metrics")),
                   20, "a metrics message counting the command marked wrong")
        assert proc.wait(60) == 0
    metrics = [m for m in sub.payloads("/pi1/metrics") if m.get("voice", {}).get("marked_wrong") == 1]
    sub.close()
    assert metrics[-1]["voice"]["threshold"] == THRESHOLD and metrics[-1]["voice"]["false_accepts_per_hour"] > 0
    assert metrics[-1]["voice"]["capture"]["wrong"] == 1
    assert json.loads(sub.texts("edge-agent/pi1/voice/set/result")[-1])["ok"] is True
    kept = list((captured / "not_yes").glob("wrong_*.wav"))
    assert len(kept) == 1
    with (captured / "captures.csv").open(encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["kind"] == "wrong"]
    assert [(r["label"], r["seq"], r["file"]) for r in rows] == [("yes", str(got[0]["seq"]),
                                                                  f"not_yes/{kept[0].name}")]


def test_a_head_with_a_dense_layer_before_its_last_is_enrolled_in_both(tmp_path: Path) -> None:
    """A head ending Dense + ReLU → Dense (as train-voice builds them): the manifest carries the
    hidden layer's inputs for its anchors (int8 codes), enroll re-fits both layers in the int8
    file, and the word the head did not know ("off", its takes) is heard after."""
    import warnings

    from edge_agent.convert import _tf
    from edge_agent.convert.voice.enroll import add_enroll_block
    from edge_agent.convert.voice.model import convert
    from edge_agent.voice.head import read_last_layer

    spec = EmbeddingSpec()
    front = FrontEnd.load()
    keras = _tf.keras()
    keras.utils.set_random_seed(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inp = keras.Input((*spec.shape, 1))
        x = keras.layers.Flatten()(inp)
        x = keras.layers.Dense(16, activation="relu")(x)
        model = keras.Model(inp, keras.layers.Dense(len(LABELS), activation="softmax")(x), name="two_dense")
    rng = np.random.default_rng(3)
    for layer in model.layers[-2:]:  # trained layers have biases (a bias of zeros is not stored at all)
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel, rng.normal(0, 0.1, bias.shape).astype(np.float32)])
    words = [(w, s) for w in (None, "yes", "no", "tree") for s in range(3)]
    windows = np.stack([emb.embeddings(front, window_with(w, s)) for w, s in words])
    _, int8_bytes, _ = convert(model, spec.shape, windows)
    path = tmp_path / "two.tflite"
    path.write_bytes(int8_bytes)
    manifest_mod.write(manifest_mod.Manifest(
        name="two", task="voice", labels=LABELS, sha256=manifest_mod.sha256_file(path), model_file=path.name,
        audio={k: v for k, v in spec.to_json().items() if k != "kind"}, provenance={}, metrics={},
        extra={"recognizer": RecognizerSettings(stride_ms=80, average_window_ms=240, threshold=0.6, min_count=2,
                                                suppression_ms=2000).to_json()},
        output=manifest_mod.OUTPUT_LOGITS), manifest_mod.manifest_path_for(path))
    y = np.array([LABELS.index("_silence_" if w is None else w if w in LABELS else "_unknown_") for w, _ in words])
    kernel, bias = model.layers[-1].get_weights()
    add_enroll_block(path, LABELS, kernel.T, bias, windows, y)
    block = json.loads(manifest_mod.manifest_path_for(path).read_text())["enroll"]
    assert "anchors" not in block and sorted(block["hidden_anchors"]["rows"]) == ["_silence_", "_unknown_", "no", "yes"]

    folder = tmp_path / "me"
    (folder / "off").mkdir(parents=True)
    for i in range(3):
        write_wav(folder / "off" / f"take_{i}.wav", np.concatenate([quiet(4000, i), tone_word("off"), quiet(4000, 9)]),
                  RATE)
    (folder / "_background_noise_").mkdir()
    write_wav(folder / "_background_noise_" / "room.wav", quiet(20 * RATE, 3), RATE)
    out = tmp_path / "mine.tflite"
    result = convert_cli("enroll", "--model", str(path), "--data", str(folder), "--out", str(out), "--no-reversed")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "off: 3 of 3 of your takes heard" in result.stdout, result.stdout + result.stderr[-2000:]
    for position in (1, 2):  # both layers rewritten, full int8
        before, after = read_last_layer(path, position), read_last_layer(out, position)
        assert after.weights_q.dtype == np.int8 and not np.array_equal(before.weights_q, after.weights_q)
    m = json.loads(manifest_mod.manifest_path_for(out).read_text())
    assert m["enroll"]["hidden_anchors"] == block["hidden_anchors"] and "two layers" in m["provenance"]["method"]
