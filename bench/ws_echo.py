#!/usr/bin/env python3
"""WebSocket-style echo for the eBPF benchmarks (bench/ebpf.sh, bench/ebpf-ws.sh).

  ws_echo.py backend PORT              echo server on 127.0.0.1:PORT (a thread
                                       per connection): answers the upgrade
                                       with 101, then echoes every byte and
                                       closes after the client's FIN
  ws_echo.py client PORT MIB TUNNELS   TUNNELS upgraded connections at once,
                                       each sends MIB MiB and reads the echo;
                                       prints "wall_seconds bytes_echoed ok"
                                       (ok: every tunnel got back exactly
                                       the bytes it sent, in order)
"""
import socket
import sys
import threading
import time


def backend(port):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(512)

    def serve(c):
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = c.recv(65536)
            if not d:
                return
            buf += d
        _, rest = buf.split(b"\r\n\r\n", 1)
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        if rest:
            c.sendall(rest)
        while True:
            d = c.recv(1 << 18)
            if not d:
                break
            c.sendall(d)
        c.close()

    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def client(port, mib, tunnels):
    size = mib << 20
    block = bytes(range(256)) * 1024
    # Byte i of a stream is i % 256; any window of the echo at offset o
    # equals pattern[o % 256 : o % 256 + len] (recv returns at most 256 KiB).
    pattern = block * 2
    done = []
    intact = []

    def one():
        s = socket.create_connection(("127.0.0.1", port))
        # A timeout makes CPython retry a spurious EAGAIN: with the eBPF
        # bypass of the client leg, a blocking recv on a sockmap socket may
        # return EAGAIN while another thread writes (proxy/src/bpf.rs,
        # "What a user sees").
        s.settimeout(30)  # and a stall fails the run instead of hanging it
        s.sendall(b"GET /ws HTTP/1.1\r\nhost: ws.bench\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = s.recv(4096)
            if not d:
                break
            buf += d
        got = 0
        same = True
        early = buf.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in buf else b""

        def send():
            left = size
            while left > 0:
                n = min(left, len(block))
                s.sendall(block[:n])
                left -= n
            s.shutdown(socket.SHUT_WR)

        t = threading.Thread(target=send)
        t.start()
        d = early
        while True:
            if d:
                o = got % 256
                same = same and d == pattern[o:o + len(d)]
                got += len(d)
            d = s.recv(1 << 18)
            if not d:
                break
        t.join()
        s.close()
        done.append(got)
        intact.append(same)

    start = time.monotonic()
    ts = [threading.Thread(target=one) for _ in range(tunnels)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.monotonic() - start
    ok = len(done) == tunnels and all(g == size for g in done) and all(intact)
    print(f"{wall:.4f} {sum(done)} {int(ok)}")


if __name__ == "__main__":
    if sys.argv[1] == "backend":
        backend(int(sys.argv[2]))
    else:
        client(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
