"""Bad input in the field: every case is exit 2 and one line, never a traceback (issue: a manifest
nested 100k deep, a TOML file that is not UTF-8, a 10 MB device id, a NaN in a manifest, a model
that loads but fails at its first invoke; a WAV file with a rate of 0 Hz, a 2 GB fmt chunk, or cut
inside a sample)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
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


# --- WAV files (issue: a file cut at an odd byte, a rate of 0 Hz, a fmt chunk of 2 GB) -----------

def _wav_bytes(seconds: float, rate: int = 16_000) -> bytes:
    """A good 16-bit mono WAV file, as the agent's own writer makes it."""
    import tempfile

    from edge_agent.sources.wav import write_wav

    samples = np.random.default_rng(0).normal(0, 0.1, int(seconds * rate)).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        write_wav(Path(d) / "good.wav", samples, rate)
        return (Path(d) / "good.wav").read_bytes()


def _patched(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + struct.pack("<I", value) + data[offset + 4:]


GOOD_WAV = _wav_bytes(3.0)
HEADER = 44  # a PCM WAV header as the standard library writes it: the samples start here


@pytest.mark.parametrize(("content", "needle"), [
    (_patched(GOOD_WAV, 24, 0), "sample rate 0 Hz"),
    (_patched(GOOD_WAV, 16, 0x7FFFFFFF), "not a PCM WAV file"),
    (_patched(GOOD_WAV, 24, 0xFFFFFFFF), "sample rate 4294967295 Hz"),
    (GOOD_WAV[:30], "not a PCM WAV file"),
], ids=["rate-0", "fmt-2GB", "rate-4G", "header-cut"])
def test_a_damaged_wav_header_is_one_line_and_exit_2(tmp_path: Path, content: bytes, needle: str) -> None:
    wav = tmp_path / "damaged.wav"
    wav.write_bytes(content)
    result = run_agent(["--task", "voice", "--source", str(wav), "--sink", "stdout"])
    assert_one_line_error(result, "damaged.wav", needle)


def test_a_wav_cut_inside_a_sample_is_read_to_its_last_whole_sample(tmp_path: Path) -> None:
    """A recording cut short by a power cut: its audio is good up to the cut, so it is read (a file
    cut on a frame boundary always was), and one warning says the tail byte was dropped."""
    wav = tmp_path / "cut.wav"
    wav.write_bytes(GOOD_WAV[:HEADER + 2 * 32_000 + 1])  # 2 s of 16-bit samples and one odd byte
    result = run_agent(["--task", "voice", "--source", str(wav), "--sink", "stdout"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line and "cut.wav" in line]
    assert len(warnings) == 1 and "the last 1 bytes are ignored" in warnings[0], result.stderr
    assert "done: 2.0 s of audio" in result.stderr, result.stderr


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, HEADER + 63), st.integers(0, 255)), max_size=6),
       st.integers(0, HEADER + 400), st.booleans())
def test_any_damage_to_a_wav_file_is_read_or_one_source_error(tmp_path: Path, flips: list[tuple[int, int]],
                                                              cut: int, truncate: bool) -> None:
    """Bytes of the header (and the first samples) overwritten, the file cut anywhere: the reader
    returns audio or raises one SourceError line, never anything else, both as a whole file
    (training data) and as the agent's streaming source."""
    from edge_agent.errors import SourceError
    from edge_agent.sources.wav import WavSource, read_wav

    data = bytearray(_wav_bytes(0.1))
    for offset, value in flips:
        data[offset] = value
    path = tmp_path / "fuzz.wav"
    path.write_bytes(bytes(data[:cut]) if truncate else bytes(data))
    try:
        samples, rate = read_wav(path)
        assert samples.dtype == np.float32 and rate > 0
    except SourceError as e:
        assert "\n" not in str(e) and "fuzz.wav" in str(e)
    source = WavSource(path, 16_000)
    try:
        source.open()
        for _ in range(1000):
            if source.read(800, 1.0) is None:
                break
        else:
            raise AssertionError("the source never ended")
    except SourceError as e:
        assert "\n" not in str(e) and "fuzz.wav" in str(e)
    finally:
        source.close()
