"""``edge-agent-convert ensemble``: several classifiers merged into one model that outputs their
mean logits, run by the agent like any other model.

What a user sees: one .tflite + manifest that the voice agent loads unchanged, scores that are the
softmax of the members' mean logits, the members named in the provenance, and a one-line refusal
when the members cannot be averaged (probabilities out, other labels, another front end)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_agent.convert import graph
from edge_agent.convert.graph import _schema
from edge_agent.manifest import load as load_manifest
from edge_agent.manifest import sha256_file
from edge_agent.voice.spotter import KeywordSpotter, load_voice_model
from tests.test_convert_cli import assert_one_line_error, convert
from tests.voice_helpers import speech_stream

ROOT = Path(__file__).resolve().parent.parent
VOICE = ROOT / "models" / "voice.tflite"


def _copy(src: Path, dst: Path) -> Path:
    shutil.copy(src, dst)
    shutil.copy(src.with_suffix(".json"), dst.with_suffix(".json"))
    return dst


def _rewrite(model: Path, edit: object, manifest_edit: dict[str, object] | None = None) -> None:
    """Edit a copy's flatbuffer with ``edit(model_t, subgraph_t)`` and keep its manifest true to it."""
    import flatbuffers

    s = _schema()
    m = s.ModelT.InitFromPackedBuf(bytearray(model.read_bytes()), 0)
    edit(m, m.subgraphs[0])  # type: ignore[operator]
    b = flatbuffers.Builder(1 << 20)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    model.write_bytes(bytes(b.Output()))
    meta = json.loads(model.with_suffix(".json").read_text())
    meta["sha256"] = sha256_file(model)
    meta.update(manifest_edit or {})
    model.with_suffix(".json").write_text(json.dumps(meta))


def _halve_logits(m: object, g: object) -> None:
    """The final FULLY_CONNECTED's weights, bias and output scales halved: the same int8 codes,
    logits worth half as much. A member that is surer of nothing, exactly."""
    fc = g.operators[-1]  # type: ignore[attr-defined]
    for i in fc.inputs[1:]:
        g.tensors[i].quantization.scale = [x / 2 for x in g.tensors[i].quantization.scale]  # type: ignore[attr-defined]
    out = g.tensors[fc.outputs[0]]  # type: ignore[attr-defined]
    out.quantization.scale = [x / 2 for x in out.quantization.scale]


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    from edge_agent.sources.wav import read_wav

    wav = tmp_path_factory.mktemp("speech") / "words.wav"
    speech_stream(wav, ["on", "kitchen", "stop", "yes"], gap_s=(0.4, 0.8))
    return read_wav(wav)[0]


def test_an_ensemble_scores_the_softmax_of_its_members_mean_logits(tmp_path: Path, speech: np.ndarray) -> None:
    a = _copy(VOICE, tmp_path / "a.tflite")
    b = _copy(VOICE, tmp_path / "b.tflite")
    _rewrite(b, _halve_logits)
    out = tmp_path / "both.tflite"
    proc = convert("ensemble", a, b, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "mean logits of 2 models" in proc.stdout
    manifest = load_manifest(out.with_suffix(".json"))
    assert manifest.logits and manifest.sha256 == sha256_file(out)
    assert [m["sha256"] for m in manifest.provenance["members"]] == [load_manifest(p.with_suffix(".json")).sha256
                                                                       for p in (a, b)]
    assert manifest.audio == load_manifest(VOICE.with_suffix(".json")).audio  # the first member's front end
    g = graph.read(out)
    assert g.summary()["full_int8"] and g.macs() == 2 * graph.read(VOICE).macs()

    one, both = KeywordSpotter(load_voice_model(a)), KeywordSpotter(load_voice_model(out))
    checked = 0
    for end in range(16000, len(speech) + 1, 4000):
        window = speech[end - 16000: end]
        p_one, p_both = one.scores(window), both.scores(window)
        logits = np.log(p_one)  # up to a constant: the softmax's inverse
        expected = np.exp(0.75 * logits - (0.75 * logits).max())  # mean of 1 and 1/2 of the same logits
        expected /= expected.sum()
        assert int(np.argmax(p_both)) == int(np.argmax(p_one))
        np.testing.assert_allclose(p_both, expected, atol=0.05)  # within the output's quantization step
        checked += 1
    assert checked >= 10


def test_members_normalised_a_little_differently_read_the_same_input(tmp_path: Path, speech: np.ndarray) -> None:
    """Two voice models trained on different data store different feature means and stds: the
    second reads the first's int8 input through a QUANTIZE operator that absorbs the difference."""
    a = _copy(VOICE, tmp_path / "a.tflite")
    b = _copy(VOICE, tmp_path / "b.tflite")
    audio = dict(load_manifest(VOICE.with_suffix(".json")).audio or {})
    shifted = {**audio, "mean": round(audio["mean"] + 0.01, 4)}
    _rewrite(b, lambda m, g: None, {"input": {"kind": "audio", **shifted}})
    out = tmp_path / "both.tflite"
    proc = convert("ensemble", a, b, "--out", out, "--json")
    assert proc.returncode == 0, proc.stderr
    errors = json.loads(proc.stdout)["input_error_steps"]
    assert errors[0] == 0 and 0 < errors[1] <= 1.0
    one, both = KeywordSpotter(load_voice_model(a)), KeywordSpotter(load_voice_model(out))
    agree = [int(np.argmax(one.scores(speech[e - 16000: e]))) == int(np.argmax(both.scores(speech[e - 16000: e])))
             for e in range(16000, len(speech) + 1, 4000)]
    assert sum(agree) >= len(agree) - 1

    far = _copy(VOICE, tmp_path / "far.tflite")
    _rewrite(far, lambda m, g: None, {"input": {"kind": "audio", **{**audio, "std": audio["std"] * 1.5}}})
    assert_one_line_error(convert("ensemble", a, far, "--out", tmp_path / "x.tflite"), str(far), "normalisation")
    assert not (tmp_path / "x.tflite").exists()


def test_members_that_cannot_be_averaged_are_refused_in_one_line(tmp_path: Path, model_dir: Path) -> None:
    a = _copy(VOICE, tmp_path / "a.tflite")
    out = tmp_path / "x.tflite"
    assert_one_line_error(convert("ensemble", a, "--out", out), "2 to 8 models")
    probs = _copy(model_dir / "tiny_int8.tflite", tmp_path / "probs.tflite")
    assert_one_line_error(convert("ensemble", a, probs, "--out", out), str(probs), "edge-agent-convert logits")
    relabelled = _copy(VOICE, tmp_path / "relabelled.tflite")
    meta = json.loads(relabelled.with_suffix(".json").read_text())
    meta["labels"] = ["ja", "nein", "an", "aus", "halt", "_silence_", "_unknown_"]
    relabelled.with_suffix(".json").write_text(json.dumps(meta))
    assert_one_line_error(convert("ensemble", a, relabelled, "--out", out), str(relabelled), "labels")
    changed = _copy(VOICE, tmp_path / "changed.tflite")
    changed.write_bytes(changed.read_bytes()[:-1] + b"\0")
    assert_one_line_error(convert("ensemble", a, changed, "--out", out), str(changed), "sha256")
    assert not out.exists()
