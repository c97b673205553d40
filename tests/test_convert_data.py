"""The conversion tool's pure parts: folder scanning, the seeded split, class weights, metrics,
flatbuffer inspection. No TensorFlow: these run in a second."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest

from edge_agent.convert import data, edgetpu, graph, report
from edge_agent.errors import ConfigError
from edge_agent.manifest import ImageInput
from edge_agent.preprocess import image as image_pre

ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def _folder(root: Path, counts: dict[str, int]) -> Path:
    for label, n in counts.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            cv2.imwrite(str(root / label / f"{i:03d}.png"), np.full((20, 30, 3), 10 * i, np.uint8))
    return root


def test_scan_orders_classes_and_skips_non_images(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d", {"b": 3, "a": 4})
    (root / "a" / "notes.txt").write_text("not an image")
    (root / "README.md").write_text("top-level files are ignored")
    ds = data.scan(root)
    assert ds.labels == ("a", "b")
    assert ds.counts() == [4, 3]


@pytest.mark.parametrize(
    ("counts", "message"),
    [({"a": 3, "empty": 0}, "class folder 'empty' has no images"), ({"only": 5}, "only one class ('only')")],
)
def test_scan_refuses_bad_folders(tmp_path: Path, counts: dict[str, int], message: str) -> None:
    root = _folder(tmp_path / "d", counts)
    with pytest.raises(ConfigError, match=re.escape(message)):
        data.scan(root)


def test_split_is_deterministic_stratified_and_disjoint(tmp_path: Path) -> None:
    ds = data.scan(_folder(tmp_path / "d", {"a": 20, "b": 7}))
    one = data.split(ds, seed=3, val_fraction=0.2, test_fraction=0.2)
    two = data.split(ds, seed=3, val_fraction=0.2, test_fraction=0.2)
    other = data.split(ds, seed=4, val_fraction=0.2, test_fraction=0.2)
    assert one == two
    assert one.test != other.test
    paths = [s.path for part in (one.train, one.val, one.test) for s in part]
    assert len(paths) == len(set(paths)) == 27
    # every class is represented in the held-out split
    assert {s.label for s in one.test} == {0, 1}
    assert one.sizes() == {"train": 12 + 5, "val": 4 + 1, "test": 4 + 1}


def test_split_refuses_a_class_too_small_to_split(tmp_path: Path) -> None:
    ds = data.scan(_folder(tmp_path / "d", {"a": 10, "b": 3}))
    with pytest.raises(ConfigError, match="class 'b' has only 3"):
        data.split(ds, 0, 0.45, 0.5)


def test_class_weights_balance_the_loss() -> None:
    labels = [0] * 594 + [1] * 137
    w = data.class_weights(labels, 2)
    assert w[1] > w[0]
    assert w[0] * 594 == pytest.approx(w[1] * 137)  # each class contributes equally
    assert (w[0] * 594 + w[1] * 137) / 731 == pytest.approx(1.0)


def test_load_images_uses_the_agent_resize_and_names_a_corrupt_file(tmp_path: Path) -> None:
    root = _folder(tmp_path / "d", {"a": 2, "b": 2})
    spec = ImageInput(16, 16)
    paths = [s.path for s in data.scan(root).samples]
    got = data.load_images(paths, spec)
    want = image_pre.resize(cv2.imread(str(paths[0])), spec)
    assert got.shape == (4, 16, 16, 3) and np.array_equal(got[0], want)
    bad = root / "a" / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(ConfigError, match=r"broken\.png cannot be read"):
        data.load_images([*paths, bad], spec)


def test_normalize_matches_the_agent_table() -> None:
    spec = ImageInput(4, 4)
    img = np.arange(48, dtype=np.uint8).reshape(1, 4, 4, 3) * 5
    x = data.normalize(img, spec)
    assert x.dtype == np.float32
    assert np.allclose(x, (img.astype(np.float32) - 127.5) / 127.5)


def test_to_pixels_inverts_normalize() -> None:
    spec = ImageInput(16, 16)
    img = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    np.testing.assert_array_equal(data.to_pixels(data.normalize(img, spec), spec), img)


def test_decode_augment_stays_within_its_bounds_and_is_seeded() -> None:
    """Without JPEG, every pixel moves by at most gain, offset and noise together; with the same
    seed the draw repeats, and a JPEG re-encode keeps shape and type and changes the image."""
    img = np.random.default_rng(0).integers(20, 236, (6, 24, 24, 3), dtype=np.uint8)
    aug = data.DecodeAugment(jpeg_p=0.0)
    out = aug.apply(img, np.random.default_rng(1))
    assert out.shape == img.shape and out.dtype == np.uint8
    bound = aug.noise + aug.offset + aug.gain * 255 + 0.5
    assert np.abs(out.astype(int) - img).max() <= bound
    assert np.abs(out.astype(int) - img).max() >= aug.noise  # it does something
    np.testing.assert_array_equal(out, aug.apply(img, np.random.default_rng(1)))
    jpeg = data.DecodeAugment(jpeg_p=1.0, noise=0, gain=0.0, offset=0.0).apply(img, np.random.default_rng(2))
    assert jpeg.shape == img.shape and jpeg.dtype == np.uint8 and not np.array_equal(jpeg, img)
    grey = img[..., :1]
    assert data.DecodeAugment(jpeg_p=1.0).apply(grey, np.random.default_rng(3)).shape == grey.shape


def test_metrics_per_class_and_confusion() -> None:
    m = report.metrics([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], ("a", "b", "c"))
    assert m["top1"] == pytest.approx(0.6)
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert m["per_class"]["b"] == {"precision": pytest.approx(2 / 3, abs=1e-4), "recall": 1.0, "support": 2}
    assert m["per_class"]["c"]["recall"] == 0.0 and m["per_class"]["c"]["precision"] is None


def test_graph_reads_the_int8_fixture_model(int8_model: Path) -> None:
    g = graph.read(int8_model)
    assert g.is_full_int8()
    assert not g.float_ops()
    assert set(g.activation_types()) <= {"INT8", "UINT8"}
    assert g.macs() > 0
    stripped = graph.read(graph.strip_names(int8_model.read_bytes()))
    assert stripped.op_counts() == g.op_counts()
    assert [t.shape for t in stripped.tensors] == [t.shape for t in g.tensors]


def test_graph_flags_a_float_model(model_dir: Path) -> None:
    g = graph.read(model_dir / "tiny_float32.tflite")
    assert not g.is_full_int8()
    assert g.float_ops()
    check = edgetpu.check(model_dir / "tiny_float32.tflite")
    assert not check["compatible"]
    assert check["cpu_fallback"] and check["ops_on_edgetpu"] == 0


def test_edgetpu_check_passes_a_full_int8_model(int8_model: Path) -> None:
    check = edgetpu.check(int8_model)
    assert check["ops_on_edgetpu"] == check["ops"]
    assert check["cpu_fallback"] == []


@pytest.mark.parametrize("tool", ["gen_waste_data", "gen_road_data"])
def test_generators_are_deterministic_and_say_synthetic(tmp_path: Path, tool: str) -> None:
    gen = _tool(tool)
    gen.generate(tmp_path / "a", per_class=2, seed=5)
    gen.generate(tmp_path / "b", per_class=2, seed=5)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    assert len(files) == 2 * len(gen.CLASSES)
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    assert "SYNTHETIC" in (tmp_path / "a" / "README.md").read_text()
    assert data.scan(tmp_path / "a").labels == tuple(sorted(gen.CLASSES))


def test_perturb_check_measures_the_shipped_model_on_its_sample(capsys: pytest.CaptureFixture[str]) -> None:
    """No noise moves nothing (the agent's path is deterministic); ±3 levels gives deltas that
    are scores' differences (0..1) over every frame of the sample video. How small they are is
    the model card's business, not this test's."""
    tool = _tool("perturb_check")
    frames = tool.read_frames(ROOT / "samples" / "road.mp4")
    assert len(frames) > 50 and frames[0].shape == (480, 640, 3)
    still = tool.measure(ROOT / "models" / "road.tflite", "road", frames[:10], 0, [0])
    assert still["max_top_delta"] == 0.0 and still["max_class_delta"] == 0.0 and still["label_flips"] == 0
    noisy = tool.perturb(frames[0], np.random.default_rng(0), 3)
    assert np.abs(noisy.astype(int) - frames[0]).max() == 3
    assert tool.main(["--task", "road", "--seeds", "0,1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["frames"] == len(frames) and result["seeds"] == [0, 1]
    assert 0.0 <= result["max_top_delta"] <= result["max_class_delta"] <= 1.0
    assert 0 <= result["label_flips"] <= 2 * len(frames)
    assert tool.main(["--task", "road", "--max-delta", "-1"]) == 1  # the gate fails when exceeded
