"""Loopback ports: a spare one to listen on, and whether something answers on one."""

from __future__ import annotations

import socket

import requests


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now (the kernel's pick, so runs don't clash)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a TCP connection to ``host:port`` succeeds within a second."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """Whether ``GET url`` answers 2xx; a refused or timed-out request is simply "not yet"."""
    try:
        return requests.get(url, timeout=timeout).ok
    except requests.RequestException:
        return False
