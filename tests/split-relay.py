#!/usr/bin/env python3
"""tests/split-relay.py - a TCP relay on 127.0.0.1 that delivers the first
bytes of every connection in two TCP segments, DELAY seconds apart (a
ClientHello that arrives in pieces, as over a slow or lossy path), then
relays both ways untouched.

    split-relay.py TARGET_PORT PORT_FILE [DELAY_S] [SPLIT_AT]

Listens on 127.0.0.1:0 and writes its port to PORT_FILE. Bounded: it stops
accepting after 60 s without a connection and exits after 180 s in all.
"""
import socket
import sys
import threading
import time

target = int(sys.argv[1])
delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.5
split_at = int(sys.argv[4]) if len(sys.argv) > 4 else 40


def pump(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def serve(c):
    try:
        u = socket.create_connection(("127.0.0.1", target), timeout=30)
        u.settimeout(None)
        for s in (c, u):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        d = c.recv(65536)
        u.sendall(d[:split_at])
        time.sleep(delay)
        u.sendall(d[split_at:])
    except OSError:
        c.close()
        return
    threading.Thread(target=pump, args=(c, u), daemon=True).start()
    pump(u, c)


ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(16)
with open(sys.argv[2] + ".tmp", "w") as f:
    f.write(str(ls.getsockname()[1]))
import os
os.rename(sys.argv[2] + ".tmp", sys.argv[2])
ls.settimeout(60)
end = time.time() + 180
threading.Timer(180, lambda: os._exit(0)).start()
while time.time() < end:
    try:
        c, _ = ls.accept()
    except socket.timeout:
        break
    threading.Thread(target=serve, args=(c,), daemon=True).start()
os._exit(0)
