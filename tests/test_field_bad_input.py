"""Bad input in the field: every case is exit 2 and one line, never a traceback (issue: a manifest
nested 100k deep, a TOML file that is not UTF-8, a 10 MB device id, a NaN in a manifest, a model
that loads but fails at its first invoke)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent import config as config_mod
from edge_agent import manifest as manifest_mod
from edge_agent.errors import ConfigError, ModelError
from edge_agent.manifest import ImageInput, Manifest
from tests.conftest import LABELS
from tests.helpers import assert_one_line_error, run_agent

DEEP = 100_000


BAD_CONFIGS = [
    ("latin1", "device_id = \"caf\xe9\"\n".encode("latin-1"), "not UTF-8"),
    ("deep", b"a = " + b"[" * DEEP + b"]" * DEEP + b"\n", "nested too deeply"),
    ("long-id", b"device_id = \"" + b"x" * 10_000_000 + b"\"\n", "field 'device_id'"),
    ("long-prefix", b"[mqtt]\ntopic_prefix = \"" + b"p" * 100_000 + b"\"\n", "field 'mqtt.topic_prefix'"),
    ("control-prefix", b"[mqtt]\ntopic_prefix = \"edge\\u0000agent\"\n", "field 'mqtt.topic_prefix'"),
    ("long-client", b"[mqtt]\nclient_id = \"" + b"c" * 70_000 + b"\"\n", "field 'mqtt.client_id'"),
]


# short explicit ids: pytest puts the id into the environment (PYTEST_CURRENT_TEST), and a 10 MB one
# makes every process the test starts fail with "Argument list too long"
@pytest.mark.parametrize(("name", "content", "needle"), BAD_CONFIGS, ids=[case[0] for case in BAD_CONFIGS])
def test_bad_config_files_are_one_short_line(tmp_path: Path, name: str, content: bytes, needle: str) -> None:
    cfg = tmp_path / f"{name}.toml"
    cfg.write_bytes(content)
    result = run_agent(["--config", str(cfg), "--validate-config"])
    line = assert_one_line_error(result, needle, str(cfg))
    assert len(line) < 500, "the error line quotes a cut value, not megabytes"


def test_a_long_device_id_flag_is_refused(int8_model: Path) -> None:
    result = run_agent(["--model", str(int8_model), "--device-id", "d" * 65, "--validate-config"])
    assert_one_line_error(result, "field 'device_id'", "64")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400) | st.text(max_size=200).map(str.encode))
def test_any_bytes_as_a_config_file_are_accepted_or_one_config_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.toml"
    path.write_bytes(data)
    cfg = config_mod.Config()
    try:
        config_mod.load_file(cfg, path)
        config_mod.validate(cfg)
    except ConfigError as e:
        assert "\n" not in str(e)


def _manifest(path: Path, model: Path, **input_fields: object) -> None:
    manifest = Manifest(name="m", task="custom", labels=LABELS, sha256=manifest_mod.sha256_file(model),
                        model_file=model.name, input=ImageInput(48, 48))
    data = manifest.to_json()
    data["input"].update(input_fields)
    path.write_text(json.dumps(data, allow_nan=True))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), [127.5, float("nan"), 127.5]])
def test_non_finite_numbers_in_a_manifest_are_refused(tmp_path: Path, int8_model: Path, value: object) -> None:
    model = tmp_path / "m.tflite"
    model.write_bytes(int8_model.read_bytes())
    _manifest(tmp_path / "m.json", model, mean=value)
    result = run_agent(["--model", str(model), "--validate-config"])
    assert_one_line_error(result, "m.json")


def test_a_manifest_nested_too_deeply_is_one_line(tmp_path: Path, int8_model: Path) -> None:
    model = tmp_path / "m.tflite"
    model.write_bytes(int8_model.read_bytes())
    (tmp_path / "m.json").write_text('{"labels": ' + "[" * DEEP + "]" * DEEP + "}")
    result = run_agent(["--model", str(model), "--validate-config"])
    assert_one_line_error(result, "m.json", "nested too deeply")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                    max_leaves=30))
def test_any_json_as_a_manifest_is_parsed_or_one_model_error(tmp_path: Path, data: object) -> None:
    path = tmp_path / "fuzz.json"
    valid = {"labels": ["a", "b"], "sha256": "0" * 64, "input": {"kind": "image", "width": 48, "height": 48,
                                                                  "mean": data}}
    for candidate in (data, valid):
        path.write_text(json.dumps(candidate, allow_nan=True))
        try:
            manifest = manifest_mod.load(path)
        except ModelError as e:
            assert "\n" not in str(e)
            continue
        if manifest.input is not None:
            import math

            assert all(math.isfinite(v) for v in (*manifest.input.mean, *manifest.input.std))


@pytest.fixture(scope="module")
def fails_at_first_invoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model that loads and allocates but whose weights buffer is empty: LiteRT says
    "Input tensor N lacks data" at the first invoke."""
    import warnings

    import tensorflow as tf
    from tensorflow.lite.tools import flatbuffer_utils

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tf.keras.utils.set_random_seed(0)
        inp = tf.keras.Input((48, 48, 3))
        x = tf.keras.layers.Conv2D(4, 3)(inp)
        x = tf.keras.layers.GlobalAveragePooling2D()(x)
        out = tf.keras.layers.Dense(len(LABELS), activation="softmax")(x)
        data = tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(inp, out)).convert()
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    for tensor in model.subgraphs[0].tensors:
        buffer = model.buffers[tensor.buffer]
        if buffer.data is not None and len(buffer.data) > 0:
            buffer.data = None
            break
    path = tmp_path_factory.mktemp("bad-model") / "lacks_data.tflite"
    flatbuffer_utils.write_model(model, str(path))
    _manifest(path.with_suffix(".json"), path)
    return path


def test_a_model_that_fails_at_its_first_invoke_is_a_model_error(fails_at_first_invoke: Path, video: Path) -> None:
    result = run_agent(["--model", str(fails_at_first_invoke), "--source", str(video), "--sink", "stdout"])
    assert_one_line_error(result, "lacks_data.tflite", "first invoke")
