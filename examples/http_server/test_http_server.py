"""Tests that talk to the shared HTTP server with nothing but urllib."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from pathlib import Path

import pytest


def fetch(url: str, method: str = "GET") -> tuple[int, http.client.HTTPMessage, bytes]:
    request = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.headers, response.read()


def test_serves_the_file(server_url: str, site: Path) -> None:
    status, _, body = fetch(f"{server_url}/hello.txt")
    assert status == 200
    assert body == (site / "hello.txt").read_bytes()


def test_reports_type_and_length(server_url: str, site: Path) -> None:
    status, headers, body = fetch(f"{server_url}/hello.txt", method="HEAD")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    assert int(headers["Content-Length"]) == (site / "hello.txt").stat().st_size
    assert body == b""


def test_lists_the_directory(server_url: str) -> None:
    status, headers, body = fetch(f"{server_url}/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert b'href="hello.txt"' in body


def test_missing_file_is_404(server_url: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        fetch(f"{server_url}/no-such-file.txt")
    assert excinfo.value.code == 404
