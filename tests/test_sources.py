"""Sources as a user meets them: a network camera that drops and returns, folders, looping files."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np

from edge_agent.sources.reader import FrameReader
from tests.helpers import assert_one_line_error, run_agent, running, start_agent
from tests.mjpeg import MjpegCamera


def test_unplugged_camera_is_reopened_with_backoff_and_the_agent_lives_on(int8_model: Path) -> None:
    camera = MjpegCamera().start()
    proc = start_agent(["--task", "custom", "--model", str(int8_model), "--source", camera.url, "--sink", "stdout",
                        "--threshold", "0", "--no-on-change", "--max-rate", "0", "--threads", "1"])
    with running(proc):
        assert proc.stdout is not None
        first = [json.loads(proc.stdout.readline()) for _ in range(5)]
        port = camera.port
        camera.stop()  # unplugged
        time.sleep(4)
        assert proc.poll() is None, "the agent must survive a camera that goes away"
        camera.start(port)  # plugged back in
        more = [json.loads(proc.stdout.readline()) for _ in range(5)]
        assert camera.connections >= 2
        assert more[-1]["seq"] > first[-1]["seq"]
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert "reopening" in err and "reopened" in err
    assert proc.returncode == 0


def test_folder_of_images_skips_unreadable_files(int8_model: Path, tmp_path: Path) -> None:
    import cv2

    for i in range(3):
        cv2.imwrite(str(tmp_path / f"img{i}.jpg"), np.full((120, 160, 3), i * 80, np.uint8))
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    result = run_agent(["--task", "custom", "--model", str(int8_model), "--source", str(tmp_path), "--sink",
                        "stdout", "--threshold", "0", "--no-on-change", "--max-rate", "0"])
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 3
    assert "skipping" in result.stderr and "broken.jpg" in result.stderr


def test_empty_folder_is_one_line(int8_model: Path, tmp_path: Path) -> None:
    result = run_agent(["--task", "custom", "--model", str(int8_model), "--source", str(tmp_path)])
    assert_one_line_error(result, "no images")


def test_loop_replays_a_video(int8_model: Path, video: Path) -> None:
    result = run_agent(["--task", "custom", "--model", str(int8_model), "--source", str(video), "--sink", "stdout",
                        "--threshold", "0", "--no-on-change", "--max-rate", "0", "--loop", "--max-frames", "75"])
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 75  # the clip has 30 frames


class FastCamera:
    """A live source delivering frames far faster than the consumer takes them."""

    name = "fast camera"
    live = True

    def __init__(self) -> None:
        self.count = 0

    def open(self) -> None:
        pass

    def read(self) -> np.ndarray:
        time.sleep(0.002)  # 500 fps
        self.count += 1
        return np.full((4, 4, 3), self.count % 256, np.uint8)

    def close(self) -> None:
        pass


def test_live_source_serves_the_freshest_frame_and_counts_drops() -> None:
    """Inference slower than the camera: old frames are dropped, so latency never builds up."""
    camera = FastCamera()
    reader = FrameReader(camera)
    reader.start()
    try:
        behind = []
        for _ in range(10):
            frame = reader.get(timeout=5.0)
            assert frame is not None
            # frames the camera had made by now that are newer than the one we got: at most the one
            # being read and the one being handed over, however slow or loaded the machine is
            behind.append(camera.count - 1 - frame.index)
            time.sleep(0.05)  # a slow model
    finally:
        reader.stop()
    assert max(behind) <= 2, behind  # never a backlog
    taken = 10
    assert camera.count - taken - 2 <= reader.dropped <= camera.count - taken  # every other frame counted
    assert reader.dropped > 0


class FileOfFrames(FastCamera):
    """A finite source (a file): every frame delivered, in order; ``delay`` per decode."""

    live = False

    def __init__(self, delay: float = 0.002) -> None:
        super().__init__()
        self.delay = delay

    def read(self) -> np.ndarray:
        time.sleep(self.delay)
        self.count += 1
        return np.full((4, 4, 3), self.count % 256, np.uint8)


def test_reader_resizes_while_the_consumer_is_busy_and_survives_a_failing_prepare() -> None:
    """A slow model: the next frame is decoded and resized in the reader thread while this one is
    inferred. A prepare that raises leaves that frame unprepared and the reader reads on."""
    tag = object()
    calls: list[str] = []
    prepared = threading.Semaphore(0)  # one release per frame the reader has tried to prepare

    def prepare(image: np.ndarray) -> tuple[object, np.ndarray]:
        calls.append(threading.current_thread().name)
        try:
            if len(calls) == 2:
                raise ValueError("a bad frame")
            return tag, image[:2, :2]
        finally:
            prepared.release()

    reader = FrameReader(FileOfFrames(), prepare=prepare)
    reader.start()
    frames = []
    try:
        for _ in range(6):
            # the consumer is busy (inferring) until the reader has prepared the next frame: no
            # sleep decides who comes first, so a loaded machine gives the same answer
            assert prepared.acquire(timeout=10)
            frames.append(reader.get(timeout=10))
    finally:
        reader.stop()
    assert [f is not None and f.prepared is not None for f in frames] == [True, False, True, True, True, True]
    for f in frames:
        if f is not None and f.prepared is not None:
            assert f.prepared[0] is tag and f.prepared[1].shape == (2, 2, 3)
    assert set(calls) == {"frame-reader"}


class _DecodedWhileTheConsumerWaits(FileOfFrames):
    """Each frame is decoded only once the consumer is blocked in ``get()`` (a tiny model, always
    waiting for the decoder): no sleep decides who comes first, so a loaded machine gives the same
    answer."""

    reader: FrameReader | None = None

    def read(self) -> np.ndarray:
        deadline = time.monotonic() + 10
        while not (self.reader is not None and self.reader._consumer_waiting) and time.monotonic() < deadline:
            time.sleep(0.001)
        return super().read()


def test_reader_hands_a_frame_to_a_waiting_consumer_without_resizing_it() -> None:
    """A tiny model waits for the decoder: resizing in the reader too would only make the reader
    the bottleneck, so the frame goes over at once and the consumer resizes it."""
    source = _DecodedWhileTheConsumerWaits()
    reader = FrameReader(source, prepare=lambda image: (object(), image))
    source.reader = reader
    reader.start()
    try:
        frames = [reader.get(timeout=10) for _ in range(5)]
    finally:
        reader.stop()
    assert all(f is not None and f.prepared is None for f in frames)
