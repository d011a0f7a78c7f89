"""Free TCP ports on 127.0.0.1 for the test bed's local processes.

Binding port 0 and closing the socket leaves the port free, so the kernel may hand the same
port to the next such call: two processes given one port each, picked one after the other, can
be given the same one (external-dns's metrics address and its webhook provider once were, and
external-dns died on `bind: address already in use`). `free_port` never returns a port it has
returned before in this process.
"""

from __future__ import annotations

import socket
import threading

_given: set[int] = set()
_lock = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on `host` now and not handed out before by this process."""
    held: list[socket.socket] = []
    try:
        while True:
            s = socket.socket()
            held.append(s)  # kept bound until a new port is found, so it is not offered again
            s.bind((host, 0))
            port = int(s.getsockname()[1])
            with _lock:
                if port not in _given:
                    _given.add(port)
                    return port
    finally:
        for s in held:
            s.close()
