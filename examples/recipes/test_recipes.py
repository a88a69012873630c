"""The recipes' servers answer, and every worker sees the same one."""

from __future__ import annotations

import os
import urllib.request

from xprocess import XProcessInfo


def get(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
        return int(response.status)


def test_a_server_on_a_free_port(server_port: int) -> None:
    assert get(server_port) == 200


def test_a_quiet_server_found_by_a_probe(quiet_port: int) -> None:
    assert get(quiet_port) == 200


def test_a_server_checked_by_a_request_of_its_own(answering_port: int) -> None:
    assert get(answering_port) == 200


def test_a_server_probed_over_http(api_port: int) -> None:
    assert get(api_port) == 200


def test_a_server_stopped_by_its_fixtures_teardown(kept: XProcessInfo) -> None:
    assert kept.isrunning()
    assert get(kept.port) == 200


def test_a_value_computed_once_for_every_worker(scratch: str) -> None:
    assert os.path.isdir(scratch)
