"""Fixtures of the integration tests that need a real local server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devhost.servers.node import Azurite, ServerError


@pytest.fixture(scope="module")
def azurite_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Azurite (blob, queue, table) for a test module: its connection string. Start-up waits
    with the servers' bounded, reported retry; a server that never comes up fails the module."""
    server = Azurite(tmp_path_factory.mktemp("azurite"))
    try:
        yield server.start_connection_string()
    except ServerError as exc:
        pytest.fail(str(exc))
    finally:
        server.stop()
