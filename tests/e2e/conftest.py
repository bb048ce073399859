"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from container_engine import DockerEngine, docker_engine_session


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    """Docker with the local base image; the container tests skip, saying why, without one."""
    yield from docker_engine_session()
