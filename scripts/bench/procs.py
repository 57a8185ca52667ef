"""Helpers the measuring scripts share (compare.py, failover.py, methods.py)."""

import socket
import time


def wait_port(port, timeout=10.0):
    """Whether something accepts connections on 127.0.0.1:port within `timeout` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False
