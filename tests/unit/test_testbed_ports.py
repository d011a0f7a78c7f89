"""testbed.ports: the ports handed to the test bed's processes are never handed out twice."""

from __future__ import annotations

import socket

from testbed.ports import free_port


def test_ports_picked_one_after_the_other_are_all_different() -> None:
    # Binding port 0 and closing gives a repeat within a few hundred picks (3 in 300 here once);
    # external-dns died on its metrics port being its webhook provider's.
    ports = [free_port() for _ in range(500)]
    assert len(set(ports)) == len(ports)


def test_a_port_handed_out_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
