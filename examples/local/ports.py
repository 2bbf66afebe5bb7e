"""Loopback ports for the local example (shared by demo.py and provider.py)."""
import random
import socket


def free_port(taken=()):
    """A loopback port that is free now, from below the kernel's ephemeral range.

    A port from bind(("127.0.0.1", 0)) comes from the range the kernel also uses for the local end
    of every outgoing connection: under the demo's load, a client connection could take it between
    this probe and the backend's own bind. Ports below that range are only ever taken on purpose.
    Ports in `taken` (handed out already, perhaps not bound yet) are never returned.
    """
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ranges:
            ephemeral_low = int(ranges.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    low = max(1024, ephemeral_low - 12000)
    for port in random.sample(range(low, low + 10000), 200):
        if port in taken:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise SystemExit(f"no free loopback port in {low}-{low + 9999}")
