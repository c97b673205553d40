"""The pure stages: resize modes, the quantization table, top-k, smoothing and the publish policy."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.manifest import ImageInput
from edge_agent.postprocess import Prediction, PublishPolicy, Scored, Smoother, predict, top_k
from edge_agent.preprocess import image as pre


def _frame() -> np.ndarray:
    """640x480 BGR: left half blue, right half red, so crops and colour order are visible."""
    f = np.zeros((480, 640, 3), np.uint8)
    f[:, :320] = (255, 0, 0)
    f[:, 320:] = (0, 0, 255)
    return f


def test_stretch_converts_bgr_to_rgb() -> None:
    out = pre.resize(_frame(), ImageInput(96, 96))
    assert out.shape == (96, 96, 3)
    assert tuple(out[48, 5]) == (0, 0, 255) and tuple(out[48, 90]) == (255, 0, 0)  # RGB now


def test_center_crop_keeps_the_middle() -> None:
    f = _frame()
    f[:, :80] = (0, 255, 0)  # a green band that a centre crop to a square must cut away
    out = pre.resize(f, ImageInput(96, 96, resize="center_crop"))
    assert not np.any(np.all(out == (0, 255, 0), axis=2))


def test_letterbox_pads_with_grey_and_keeps_aspect() -> None:
    out = pre.resize(_frame(), ImageInput(96, 96, resize="letterbox"))
    assert out.shape == (96, 96, 3)
    assert np.all(out[:10] == pre.LETTERBOX_FILL) and np.all(out[-10:] == pre.LETTERBOX_FILL)
    assert tuple(out[48, 5]) == (0, 0, 255)


def test_gray_models_get_one_channel() -> None:
    out = pre.resize(_frame(), ImageInput(32, 32, channels=1, color_order="GRAY", mean=(127.5,), std=(127.5,)))
    assert out.shape == (32, 32, 1)


def test_tables_map_pixels_through_mean_std_and_quantization() -> None:
    spec = ImageInput(8, 8, mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0))  # real = pixel / 255
    uint8 = pre.make_table(spec, np.dtype(np.uint8), scale=1 / 255, zero_point=0)
    assert uint8[0, 0] == 0 and uint8[255, 0] == 255 and uint8[128, 2] == 128
    int8 = pre.make_table(spec, np.dtype(np.int8), scale=1 / 255, zero_point=-128)
    assert int8[0, 0] == -128 and int8[255, 0] == 127
    floats = pre.make_table(spec, np.dtype(np.float32))
    assert floats[255, 1] == pytest.approx(1.0)
    img = np.arange(192, dtype=np.uint8).reshape(8, 8, 3)
    np.testing.assert_array_equal(pre.quantize(img, int8), (img.astype(np.int16) - 128).astype(np.int8))
    np.testing.assert_allclose(pre.normalize(img, spec), img / 255.0, rtol=1e-6)


def test_torchvision_preprocessing_per_channel_matches_torchvision() -> None:
    """An ImageNet start's manifest (torchvision's mean/std, RGB): a BGR camera frame reaches the
    model as torchvision's ToTensor + Normalize would make it, and its int8 form is that rounded."""
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    spec = ImageInput(8, 8, 3, "RGB", "stretch", tuple(255 * m for m in mean), tuple(255 * s for s in std))
    rng = np.random.default_rng(3)
    bgr = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    rgb = pre.resize(bgr, spec)
    np.testing.assert_array_equal(rgb, bgr[:, :, ::-1])
    want = (rgb / 255.0 - np.asarray(mean)) / np.asarray(std)
    np.testing.assert_allclose(pre.normalize(rgb, spec), want, atol=1e-5)
    scale, zero_point = 0.0187, -14  # what a converter might choose for inputs in about [-2.1, 2.6]
    table = pre.make_table(spec, np.dtype(np.int8), scale=scale, zero_point=zero_point)
    q = pre.quantize(rgb, table)
    np.testing.assert_array_equal(q, np.clip(np.round(want / scale + zero_point), -128, 127).astype(np.int8))
    assert table[0, 0] != table[0, 2]  # per-channel: the same pixel value means different inputs


def test_int8_fill_writes_straight_into_a_tensor_view() -> None:
    spec = ImageInput(4, 4)
    table = pre.make_table(spec, np.dtype(np.int8), scale=1 / 127.5, zero_point=0)
    target = np.zeros((1, 4, 4, 3), np.int8)
    img = np.full((4, 4, 3), 255, np.uint8)
    pre.make_fill(table)(img, target)
    assert np.all(target == 127)


def test_top_k_orders_and_names() -> None:
    scores = np.array([0.1, 0.6, 0.3], np.float32)
    assert top_k(scores, ["a", "b", "c"], 2) == (Scored("b", 0.6), Scored("c", 0.3))
    p = predict(scores, ["a", "b", "c"], 5)
    assert (p.label, p.class_index, len(p.top)) == ("b", 1, 3)


def test_smoother_averages_the_last_n() -> None:
    s = Smoother(2)
    s.update(np.array([1.0, 0.0]))
    np.testing.assert_allclose(s.update(np.array([0.0, 1.0])), [0.5, 0.5])
    np.testing.assert_allclose(s.update(np.array([0.0, 1.0])), [0.0, 1.0])


def _p(label: str, score: float) -> Prediction:
    return Prediction(label, score, 0, (Scored(label, score),))


def test_policy_threshold_rate_and_on_change_with_hysteresis() -> None:
    policy = PublishPolicy(threshold=0.5)
    assert not policy.decide(_p("a", 0.4), 0.0)
    assert policy.decide(_p("a", 0.6), 0.0)
    rate = PublishPolicy(threshold=0.0, max_rate=2.0, on_change=False)
    assert [rate.decide(_p("a", 1), t) for t in (0.0, 0.2, 0.5, 0.6, 1.0)] == [True, False, True, False, True]
    change = PublishPolicy(threshold=0.5, on_change=True, hysteresis=0.2, max_rate=0)
    assert change.decide(_p("a", 0.6), 0)
    assert not change.decide(_p("a", 0.9), 1)  # same label
    assert not change.decide(_p("b", 0.6), 2)  # a new label below threshold + hysteresis does not flap
    assert change.decide(_p("b", 0.75), 3)
