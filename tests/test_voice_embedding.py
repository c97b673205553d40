"""The speech-embedding voice path as a user meets it: the two shipped front-end files, checked;
streaming at one mel step and one embedding per 80 ms hop; a manifest that names the front end,
refused with one line when it does not fit the model; and the agent on a WAV file with a fixed
head (weights set in code from the shipped front end's own vectors, no training), so these tests
cannot move when a model is retrained."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_agent.errors import ModelError
from edge_agent.sources.wav import write_wav
from edge_agent.voice import embedding as emb
from edge_agent.voice.embedding import EmbeddingSpec, EmbeddingStream, FrontEnd
from tests.helpers import assert_one_line_error, run_agent
from tests.voice_helpers import VOICE_MODEL, quiet, tone_word, window_with

HEAD_LABELS = ("yes", "no", "on", "off", "stop", "_silence_", "_unknown_")
# label → tone word (tests/voice_helpers.py): tones the embedding tells apart (>40 apart; above ~2 kHz
# a pure tone sits next to the quiet floor in this front end)
HEAD_WORDS = {"yes": "yes", "stop": "on", "_unknown_": "no"}


def build_head(path: Path) -> Path:
    """A full-int8 head converted by train-voice's own conversion: label c's logit is a nearest-
    prototype score, -|mean_t(x_t) - p_c|^2 / 2 written as a linear layer (p_c: the mean embedding
    of c's tone word as the front end sees it; ``_silence_``: the quiet floor). Labels without a
    tone ("no", "on", "off") get a prototype far away."""
    if path.exists():
        return path
    import warnings

    from edge_agent import manifest as manifest_mod
    from edge_agent.convert import _tf
    from edge_agent.convert.voice.model import convert
    from edge_agent.voice.recognizer import RecognizerSettings

    spec = EmbeddingSpec()
    front = FrontEnd.load()
    protos = {label: emb.embeddings(front, window_with(word, 1, spec)).mean(axis=0)
              for label, word in HEAD_WORDS.items()}
    protos["_silence_"] = emb.embeddings(front, window_with(None, 1, spec)).mean(axis=0)
    keras = _tf.keras()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inp = keras.Input((*spec.shape, 1))
        x = keras.layers.Conv2D(len(HEAD_LABELS), spec.shape, use_bias=True)(inp)
        x = keras.layers.Flatten()(x)
        model = keras.Model(inp, keras.layers.Softmax()(x), name="tone_head")
    w = np.zeros((*spec.shape, 1, len(HEAD_LABELS)), np.float32)
    b = np.zeros(len(HEAD_LABELS), np.float32)
    scale = 0.1  # logits a few units apart at the prototypes
    for i, label in enumerate(HEAD_LABELS):
        if label in protos:
            p = protos[label]
            w[:, :, 0, i] = scale * p / spec.embeddings
            b[i] = -scale * float(p @ p) / 2
    b[[i for i, label in enumerate(HEAD_LABELS) if label not in protos]] = float(b.min()) - 20.0
    model.layers[1].set_weights([w, b])
    calib = np.stack([emb.embeddings(front, window_with(word, s, spec))
                      for word in (None, "yes", "stop", "tree") for s in range(4)])
    _, int8_bytes, _ = convert(model, spec.shape, calib)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(int8_bytes)
    manifest = manifest_mod.Manifest(
        name="tone-head", task="voice", labels=HEAD_LABELS, sha256=manifest_mod.sha256_file(path),
        model_file=path.name, audio={k: v for k, v in spec.to_json().items() if k != "kind"},
        provenance={"made_by": "tests/test_voice_embedding.py build_head"}, metrics={},
        extra={"recognizer": RecognizerSettings(stride_ms=80, average_window_ms=240, threshold=0.6, min_count=2,
                                                suppression_ms=2000).to_json()},  # a tone stays in view ~1.9 s
        output=manifest_mod.OUTPUT_LOGITS)
    manifest_mod.write(manifest, manifest_mod.manifest_path_for(path))
    return path


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_head(tmp_path_factory.mktemp("head") / "head.tflite")


def test_the_front_end_files_are_shipped_with_their_sha256_and_licence() -> None:
    found = emb.check_files()
    assert set(found) == {emb.MEL_FILE, emb.EMBEDDING_FILE}
    info = json.loads((emb.folder() / emb.INFO_FILE).read_text())
    assert all("Apache-2.0" in entry["licence"] for entry in info["files"].values())
    assert "Apache License" in (emb.folder() / "LICENSE").read_text()


def test_a_changed_front_end_file_is_refused_with_one_line(tmp_path: Path) -> None:
    copy = tmp_path / "speech_embedding"
    shutil.copytree(emb.folder(), copy)
    data = bytearray((copy / emb.EMBEDDING_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / emb.EMBEDDING_FILE).write_bytes(bytes(data))
    with pytest.raises(ModelError) as e:
        FrontEnd.load(copy)
    assert "embedding_model.tflite" in str(e.value) and "\n" not in str(e.value)
    (copy / emb.MEL_FILE).unlink()
    with pytest.raises(ModelError, match=r"melspectrogram\.tflite not found"):
        FrontEnd.load(copy)


class CountingFrontEnd(FrontEnd):
    """The real front end, counting its model runs."""

    mel_runs = 0
    embedding_runs = 0

    def mel_frames(self, pcm: np.ndarray) -> np.ndarray:
        self.mel_runs += 1
        return super().mel_frames(pcm)

    def embed(self, frames: np.ndarray) -> np.ndarray:
        self.embedding_runs += 1
        return super().embed(frames)


def test_each_80_ms_hop_costs_one_mel_step_and_one_embedding_once_warm() -> None:
    base = FrontEnd.load()
    front = CountingFrontEnd(base.mel, base.embedding, base.backend)
    stream = EmbeddingStream(front)
    x = quiet(30 * emb.HOP_SAMPLES, 0)
    out = [stream.push(x[i * emb.HOP_SAMPLES: (i + 1) * emb.HOP_SAMPLES]) for i in range(30)]
    first = next(i for i, v in enumerate(out) if v is not None)
    assert first == emb.warm_hops() - 1  # 76 mel frames at 8 a hop: the 10th hop
    assert all(v is not None and v.shape == (96,) for v in out[first:])
    assert front.mel_runs == 30 and front.embedding_runs == 30 - first
    again = emb.embeddings(base, x)  # a fresh stream over the same audio: the same vectors
    assert np.allclose(again, np.stack([v for v in out if v is not None]), atol=1e-4)
    with pytest.raises(ValueError, match="1280"):
        stream.push(x[:1000])


def _lone(tmp_path: Path, manifest: dict[str, object], model: Path) -> tuple[Path, Path]:
    lone = tmp_path / "lone.tflite"
    lone.write_bytes(model.read_bytes())
    (tmp_path / "lone.json").write_text(json.dumps(manifest))
    wav = tmp_path / "q.wav"
    write_wav(wav, np.zeros(16_000, np.float32), 16_000)
    return lone, wav


def test_a_manifest_whose_front_end_does_not_fit_the_model_is_refused(tmp_path: Path) -> None:
    data = json.loads(VOICE_MODEL.with_suffix(".json").read_text())
    data["input"] = {"kind": "audio", "frontend": "speech_embedding", "embeddings": 10, "sample_rate": 16000,
                     "hop_ms": 80, "embedding_dim": 96}
    lone, wav = _lone(tmp_path, data, VOICE_MODEL)
    assert_one_line_error(run_agent(["--task", "voice", "--model", str(lone), "--source", str(wav),
                                     "--sink", "stdout"]), "speech_embedding", "model's input")
    data["input"]["frontend"] = "wav2vec"
    (tmp_path / "lone.json").write_text(json.dumps(data))
    assert_one_line_error(run_agent(["--task", "voice", "--model", str(lone), "--source", str(wav),
                                     "--sink", "stdout"]), "wav2vec", "log_mel")


def test_a_head_on_log_mel_frames_is_refused(tmp_path: Path, head: Path) -> None:
    data = json.loads(VOICE_MODEL.with_suffix(".json").read_text())  # a log-mel manifest (no front end named)
    data["sha256"] = json.loads(head.with_suffix(".json").read_text())["sha256"]
    lone, wav = _lone(tmp_path, data, head)
    assert_one_line_error(run_agent(["--task", "voice", "--model", str(lone), "--source", str(wav),
                                     "--sink", "stdout"]), "log_mel", "model's input")


def test_the_agent_announces_each_tone_word_once_with_its_offset_in_the_file(tmp_path: Path, head: Path) -> None:
    words = ["yes", "on", "yes"]  # tones the head hears as yes, stop, yes
    parts, starts = [quiet(48_000, 5)], []
    for i, w in enumerate(words):
        starts.append(sum(len(p) for p in parts) / 16_000)
        parts += [tone_word(w) + quiet(6400, 10 + i), quiet(40_000, 20 + i)]
    wav = tmp_path / "tones.wav"
    write_wav(wav, np.concatenate(parts), 16_000)
    result = run_agent(["--task", "voice", "--model", str(head), "--source", str(wav), "--sink", "stdout"])
    assert result.returncode == 0, result.stderr[-2000:]
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [e["command"] for e in events] == ["yes", "stop", "yes"]
    for e, start in zip(events, starts, strict=True):
        assert start < e["offset_s"] < start + 0.4 + 1.6  # after the word began, within the 1.48 s window
    assert "speech_embedding front end" in result.stderr


SHIPPED = VOICE_MODEL.with_name("voice_embedding.tflite")


def test_the_shipped_embedding_model_is_full_int8_small_and_names_its_front_end() -> None:
    from edge_agent.voice.spotter import load_voice_model

    model = load_voice_model(SHIPPED)
    assert model.frontend == "speech_embedding" and model.front is not None
    # small: under half the size of the embedding model it sits on (its heads are ~0.4 MiB of int8)
    front_bytes = (SHIPPED.parent / "speech_embedding" / "embedding_model.tflite").stat().st_size
    assert model.engine.input_dtype == np.int8 and SHIPPED.stat().st_size <= front_bytes // 2
    assert model.labels == HEAD_LABELS and model.manifest.logits
    assert model.settings.stride_ms == 80 and 0.5 <= model.settings.threshold <= 1.0


def test_the_shipped_embedding_model_announces_only_what_was_said(tmp_path: Path) -> None:
    """Properties any model must keep, however well it was trained (how many it hears is the model
    card's figure): each event a spoken command, at most one per word, in order, near where it was said."""
    from tests.voice_helpers import HELD_OUT_VOICE, assert_events_follow_the_words, speech_stream

    wav = tmp_path / "speech.wav"
    marks = speech_stream(wav, ["on", "off", "yes", "stop"], voice=HELD_OUT_VOICE, seed=3)
    result = run_agent(["--task", "voice", "--model", str(SHIPPED), "--source", str(wav), "--sink", "stdout"])
    assert result.returncode == 0, result.stderr[-2000:]
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert_events_follow_the_words([(e["command"], e["offset_s"]) for e in events], marks, after_s=1.6)
