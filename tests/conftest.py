"""Session fixtures: real tiny TFLite models made with TensorFlow, real brokers, real videos."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from edge_agent import manifest as manifest_mod
from edge_agent.manifest import ImageInput, Manifest
from tests.helpers import Broker, make_video

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

LABELS = ("red", "green", "blue")


def _build_tflite(path: Path, io_type: str, size: int = 48) -> bytes:
    """A small conv net (random weights), converted for real by TensorFlow."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    inp = tf.keras.Input((size, size, 3))
    x = tf.keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inp)
    x = tf.keras.layers.DepthwiseConv2D(3, activation="relu")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    out = tf.keras.layers.Dense(len(LABELS), activation="softmax")(x)
    model = tf.keras.Model(inp, out)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if io_type != "float32":
        rng = np.random.default_rng(0)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: (
            [rng.uniform(-1, 1, (1, size, size, 3)).astype(np.float32)] for _ in range(32)
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = getattr(tf, io_type)
        converter.inference_output_type = getattr(tf, io_type)
    data: bytes = converter.convert()
    path.write_bytes(data)
    return data


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny_int8 / tiny_uint8 / tiny_float .tflite, each with a manifest, plus a labels.txt."""
    import warnings

    d = tmp_path_factory.mktemp("models")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for io_type in ("int8", "uint8", "float32"):
            name = f"tiny_{io_type}"
            path = d / f"{name}.tflite"
            _build_tflite(path, io_type)
            manifest = Manifest(
                name=name, task="custom", labels=LABELS, sha256=manifest_mod.sha256_file(path),
                model_file=path.name, input=ImageInput(48, 48), provenance={"made_by": "tests/conftest.py"},
            )
            manifest_mod.write(manifest, manifest_mod.manifest_path_for(path))
    (d / "labels.txt").write_text("\n".join(LABELS) + "\n")
    return d


@pytest.fixture(scope="session")
def int8_model(model_dir: Path) -> Path:
    return model_dir / "tiny_int8.tflite"


@pytest.fixture(scope="session")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("video") / "sample.mp4", frames=30)


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    started: list[Broker] = []

    def factory(extra_conf: str = "", port: int | None = None, start: bool = True, persistent: bool = False) -> Broker:
        broker = Broker(tmp_path, extra_conf, port, persistent)
        started.append(broker)
        return broker.start() if start else broker

    yield factory
    for b in started:
        b.stop()


@pytest.fixture
def broker(broker_factory: Callable[..., Broker]) -> Broker:
    return broker_factory()


MAX_TEST_ID_CHARS = 200


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Short test ids: pytest puts the id of the running test into the environment of every process
    it starts (PYTEST_CURRENT_TEST), and a parameter's bytes in an id (a 10 MB config) made each of
    them fail with "Argument list too long". Give such cases ``ids=``."""
    long = [item.nodeid[:120] + "…" for item in items if len(item.nodeid) > MAX_TEST_ID_CHARS]
    if long:
        raise pytest.UsageError(f"test ids over {MAX_TEST_ID_CHARS} characters (give them ids=): {long}")
