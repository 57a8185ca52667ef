#!/usr/bin/python3
"""An independent open-loop reference client for checking ringlb-load's pacing (standard library
only, written for the test, sharing nothing with ringlb-load).

One keep-alive connection sends GET requests on a fixed schedule (request i is due at
start + i / rate) and times each response from its due time, as an open loop must. It prints
{"requests": N, "p50_us": …, "p99_us": …, "late_p99_us": …} (late: how late the sends went out).

usage: ref_client.py HOST PORT PATH RATE SECONDS
"""

import json
import socket
import sys
import time


def read_response(sock, buf):
    """Consumes one Content-Length response from buf (+ the socket); returns what follows it."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        rest += chunk
    return rest[length:]


def quantile(sorted_values, q):
    if not sorted_values:
        return 0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def main():
    host, port, path, rate, seconds = sys.argv[1:6]
    rate, seconds = float(rate), float(seconds)
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    interval = 1.0 / rate
    start = time.monotonic() + 0.05
    latencies, late = [], []
    buf = b""
    i = 0
    while True:
        due = start + i * interval
        if due >= start + seconds:
            break
        now = time.monotonic()
        if now < due:
            time.sleep(due - now)
        late.append(time.monotonic() - due)
        sock.sendall(request)
        buf = read_response(sock, buf)
        latencies.append(time.monotonic() - due)
        i += 1
    sock.close()
    latencies.sort()
    late.sort()
    us = lambda s: int(s * 1e6)
    print(json.dumps({
        "requests": len(latencies),
        "p50_us": us(quantile(latencies, 0.5)),
        "p99_us": us(quantile(latencies, 0.99)),
        "late_p99_us": us(quantile(late, 0.99)),
    }))


if __name__ == "__main__":
    main()
