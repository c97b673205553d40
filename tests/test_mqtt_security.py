"""A broker with a password file and a TLS listener (a CA made with openssl in the test)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import (
    Broker,
    Subscriber,
    agent_env,
    assert_one_line_error,
    free_port,
    make_ca,
    make_cert,
    make_password_file,
    once_each,
    run_agent,
)


@pytest.fixture
def secure_broker(tmp_path: Path, broker_factory: Callable[..., Broker]) -> tuple[Broker, Path]:
    ca = make_ca(tmp_path)
    server = make_cert(tmp_path, ca, "server")
    passwords = make_password_file(tmp_path, {"pi": "right-pw", "hub": "hub-pw"})
    port = free_port()
    conf = (
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n"
        f"cafile {ca[0]}\ncertfile {server[0]}\nkeyfile {server[1]}\n"
    )
    return broker_factory(conf, port=port), ca[0]


def _args(int8_model: Path, video: Path, broker: Broker, ca: Path, *extra: str) -> list[str]:
    return ["--task", "custom", "--model", str(int8_model), "--source", str(video), "--threshold", "0",
            "--no-on-change", "--max-rate", "0",
            "--mqtt-host", broker.host, "--mqtt-port", str(broker.port), "--device-id", "secure1",
            "--mqtt-username", "pi", "--tls", "--ca", str(ca), *extra]


def test_right_credentials_over_tls_deliver(int8_model: Path, video: Path,
                                            secure_broker: tuple[Broker, Path]) -> None:
    broker, ca = secure_broker
    sub = Subscriber(broker, "edge-agent/#", username="hub", password="hub-pw", ca=str(ca))
    result = run_agent(_args(int8_model, video, broker, ca), env=agent_env(EDGE_AGENT_MQTT_PASSWORD="right-pw"))
    assert result.returncode == 0, result.stderr
    got = once_each(sub.wait_for("/custom/prediction", 30))
    sub.close()
    assert [p["seq"] for p in got] == list(range(30))
    assert "right-pw" not in result.stderr


def test_password_from_a_file(int8_model: Path, video: Path, secure_broker: tuple[Broker, Path],
                              tmp_path: Path) -> None:
    broker, ca = secure_broker
    secret = tmp_path / "mqtt_password"
    secret.write_text("right-pw\n")
    result = run_agent(_args(int8_model, video, broker, ca, "--mqtt-password-file", str(secret), "--max-frames", "3"))
    assert result.returncode == 0, result.stderr


def test_password_from_systemd_credentials(int8_model: Path, video: Path, secure_broker: tuple[Broker, Path],
                                           tmp_path: Path) -> None:
    broker, ca = secure_broker
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt_password").write_text("right-pw")
    result = run_agent(_args(int8_model, video, broker, ca, "--max-frames", "3"),
                       env=agent_env(CREDENTIALS_DIRECTORY=str(creds)))
    assert result.returncode == 0, result.stderr


def test_wrong_password_is_retried_and_said_not_exit_2(int8_model: Path, video: Path,
                                                       secure_broker: tuple[Broker, Path]) -> None:
    """A refused login may be an auth backend restarting after a power cut: exit 2 would stop the
    unit for good (RestartPreventExitStatus=2), so it is retried and said loudly instead."""
    broker, ca = secure_broker
    result = run_agent(_args(int8_model, video, broker, ca), env=agent_env(EDGE_AGENT_MQTT_PASSWORD="wrong-pw"),
                       timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "wrong-pw" not in result.stderr
    refused = [line for line in result.stderr.splitlines() if "refused the connection" in line]
    assert len(refused) == 1, result.stderr  # rate-limited: one line, however many retries
    assert "Not authorized" in refused[0] or "user name or password" in refused[0]
    assert "retrying" in refused[0] and "mqtt.username" in refused[0]


def test_wrong_ca_is_one_line(int8_model: Path, video: Path, secure_broker: tuple[Broker, Path],
                              tmp_path: Path) -> None:
    broker, _ = secure_broker
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other_ca, _ = make_ca(other_dir, "other-ca")
    result = run_agent(_args(int8_model, video, broker, other_ca, "--loop"),
                       env=agent_env(EDGE_AGENT_MQTT_PASSWORD="right-pw"), timeout=60)
    assert_one_line_error(result, "TLS certificate not trusted", "mqtt.ca")


def test_over_tls_only_the_connection_thread_touches_the_socket(secure_broker: tuple[Broker, Path]) -> None:
    """OpenSSL objects are not thread-safe and CPython drops the GIL in SSL_read and SSL_write: a
    publish written in the sender's thread while the connection thread reads corrupts the heap
    (a fresh-clone CI run died of ``malloc(): invalid size``). Every write must come from the
    connection thread, whichever thread published, and still go out at once."""
    import ssl
    import sys
    import threading
    import time

    from edge_agent.config import MqttConfig
    from edge_agent.publish.mqtt import MqttPublisher
    from edge_agent.publish.spool import MemorySpool

    broker, ca = secure_broker
    writers: set[str] = set()

    def profile(frame: object, event: str, arg: object) -> None:
        code = getattr(frame, "f_code", None)
        if event == "call" and code is not None and code.co_name in ("send", "write", "sendall") \
                and code.co_filename == ssl.__file__:
            writers.add(threading.current_thread().name)

    cfg = MqttConfig(host=broker.host, port=broker.port, username="pi", password="right-pw", tls=True, ca=str(ca))
    publisher = MqttPublisher(cfg, "tlsthreads", "custom", MemorySpool())
    sub = Subscriber(broker, "edge-agent/tlsthreads/#", username="hub", password="hub-pw", ca=str(ca))
    threading.setprofile(profile)
    sys.setprofile(profile)
    try:
        publisher.start()
        assert publisher.wait_connected(15)
        for i in range(50):  # from this thread (discovery, replies) and, through the spool, the sender's
            publisher.send_now("edge-agent/tlsthreads/custom/direct", f'{{"i": {i}}}', 1, False)
            publisher.publish("custom/prediction", {"seq": i})
        deadline = time.monotonic() + 15
        while (len(sub.payloads("/prediction")) < 50 or len(sub.payloads("/direct")) < 50) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
        publisher.stop(2.0)
        sub.close()
    assert [p["seq"] for p in sub.payloads("/prediction")] == list(range(50))
    assert len(sub.payloads("/direct")) == 50
    assert writers == {"mqtt-connection"}, writers
