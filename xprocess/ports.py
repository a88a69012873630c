"""Choosing a free TCP port for a server to listen on."""

from __future__ import annotations

import socket

__all__ = ["free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now.

    The OS picks it; it stays free unless another program binds it before your server does, so
    choose it in the starter (where the server starts next) and record it in ``self.data``.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
