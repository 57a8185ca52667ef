"""A real WebSocket peer (the `websockets` library, Debian's python3-websockets) for the tunnel
tests (tests/it/tunnels.rs).

  ws_peer.py serve            echo server on 127.0.0.1; prints its port. A text message
                              "server-close" makes it close the connection itself (code 4000).
  ws_peer.py client URL [CA]  runs the checks through URL (wss:// with the CA file), printing
                              "ok NAME" for each check that passed; exits 1 at the first failure.
  ws_peer.py hold URL N SECS  opens N connections, holds them SECS seconds (each sends one
                              message then waits), checks each still echoes, prints "held N".
"""
import asyncio
import hashlib
import os
import ssl
import sys

import websockets


async def echo(ws, path=None):
    async for message in ws:
        if message == "server-close":
            await ws.close(code=4000, reason="server says bye")
            return
        await ws.send(message)


async def serve():
    async with websockets.serve(echo, "127.0.0.1", 0, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(port, flush=True)
        await asyncio.Future()


def context(url, ca):
    if not url.startswith("wss://"):
        return None
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    return ctx


async def client(url, ca):
    ctx = context(url, ca)
    async with websockets.connect(url, ssl=ctx, max_size=None) as ws:
        await ws.send("héllo, tunnel")
        assert await ws.recv() == "héllo, tunnel", "text echo"
        print("ok text", flush=True)
        blob = bytes(range(256)) * 64
        await ws.send(blob)
        assert await ws.recv() == blob, "binary echo"
        print("ok binary", flush=True)
        big = os.urandom(10 * 1024 * 1024)
        await ws.send(big)
        back = await asyncio.wait_for(ws.recv(), 60)
        assert hashlib.sha256(back).digest() == hashlib.sha256(big).digest(), "10 MiB echo"
        print("ok 10MiB", flush=True)
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, 5)
        print("ok ping", flush=True)
        await ws.close(code=1000, reason="client done")
        assert ws.close_code == 1000, f"client close answered with {ws.close_code}"
        print("ok client-close", flush=True)
    async with websockets.connect(url, ssl=ctx) as ws:
        await ws.send("server-close")
        try:
            await asyncio.wait_for(ws.recv(), 5)
            raise AssertionError("the server did not close")
        except websockets.ConnectionClosed:
            pass
        assert ws.close_code == 4000, f"server close came as {ws.close_code}"
        assert ws.close_reason == "server says bye", ws.close_reason
        print("ok server-close", flush=True)


async def hold(url, n, secs):
    conns = []
    for i in range(n):
        conns.append(await websockets.connect(url))
        await conns[-1].send(f"hello {i}")
    for i, ws in enumerate(conns):
        assert await ws.recv() == f"hello {i}"
    print(f"open {n}", flush=True)
    await asyncio.sleep(secs)
    for i, ws in enumerate(conns):
        await ws.send(f"again {i}")
    for i, ws in enumerate(conns):
        assert await ws.recv() == f"again {i}"
    for ws in conns:
        await ws.close()
    print(f"held {n}", flush=True)


def main():
    mode = sys.argv[1]
    if mode == "serve":
        asyncio.run(serve())
    elif mode == "client":
        asyncio.run(client(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
    elif mode == "hold":
        asyncio.run(hold(sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
