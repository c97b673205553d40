"""``edge-agent-convert logits``: the final int8 softmax removed, the softmax applied by the engine.

What a user sees: the same predictions, the same model otherwise, scores no longer capped at
255/256, and a one-line refusal for a model that has no softmax to remove."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_agent.agents.image import ImageInference
from edge_agent.config import Config
from edge_agent.convert import graph
from edge_agent.errors import ModelError
from edge_agent.manifest import load as load_manifest
from edge_agent.service import load_model
from edge_agent.sources.base import Frame
from tests.test_convert_cli import assert_one_line_error, convert


def _inference(model: Path) -> ImageInference:
    config = Config(task="custom")
    config.model.path = str(model)
    return ImageInference(load_model(config)[1])


def test_logits_model_predicts_the_same_with_uncapped_scores(model_dir: Path, tmp_path: Path) -> None:
    src = model_dir / "tiny_int8.tflite"
    out = tmp_path / "tiny_logits.tflite"
    proc = convert("logits", src, "--out", out)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["output"] == "logits"
    assert manifest["provenance"]["softmax_removed"]["from_sha256"] == load_manifest(src.with_suffix(".json")).sha256
    before, after = graph.read(src), graph.read(out)
    assert before.summary()["ops"].get("SOFTMAX") == 1 and "SOFTMAX" not in after.summary()["ops"]
    assert after.summary()["full_int8"] and after.macs() == before.macs()

    old, new = _inference(src), _inference(out)
    rng = np.random.default_rng(3)
    for _ in range(5):
        frame = Frame(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8), 0.0, 0.0, 0)
        p_old, p_new = old(frame), new(frame)
        assert int(np.argmax(p_new)) == int(np.argmax(p_old))
        assert p_new.sum() == pytest.approx(1.0, abs=1e-5)
        # the old output is the same softmax on 256 levels: within a level (and a little rounding)
        np.testing.assert_allclose(p_new, p_old, atol=2.5 / 256)


def test_logits_twice_or_on_a_foreign_file_is_one_line(model_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "m.tflite"
    shutil.copy(model_dir / "tiny_int8.tflite", model)
    shutil.copy(model_dir / "tiny_int8.json", tmp_path / "m.json")
    assert convert("logits", model).returncode == 0  # in place, manifest beside it updated
    assert load_manifest(tmp_path / "m.json").output == "logits"
    assert_one_line_error(convert("logits", model), str(model), "not made by a SOFTMAX")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"TFL3" * 10)
    assert_one_line_error(convert("logits", junk), str(junk))


def test_a_manifest_with_an_unknown_output_kind_names_the_field(model_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "m.tflite"
    shutil.copy(model_dir / "tiny_int8.tflite", model)
    data = json.loads((model_dir / "tiny_int8.json").read_text())
    (tmp_path / "m.json").write_text(json.dumps({**data, "output": "log-probs"}))
    with pytest.raises(ModelError, match=r"field 'output' must be one of probabilities, logits"):
        load_manifest(tmp_path / "m.json")
