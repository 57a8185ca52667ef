"""Helpers the measuring scripts share (compare.py, count.py, failover.py, methods.py)."""

import os
import signal
import socket
import subprocess
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


def ports_in_use(ports):
    """Which of `ports` something on 127.0.0.1 already accepts connections on. A run must not start
    then: a proxy binding with SO_REUSEPORT (ringlb does) shares its port silently with a stray one,
    which takes part of the load and makes the figures wrong."""
    busy = []
    for port in ports:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                busy.append(port)
        except OSError:
            pass
    return busy


def stop(p, timeout=10):
    """Stops a process this script started (by its pid), continuing it first if it was stopped:
    SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    if p.poll() is None:
        os.kill(p.pid, signal.SIGCONT)
        p.terminate()
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
