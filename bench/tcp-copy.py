#!/usr/bin/env python3
"""bench/tcp-copy.py - a raw TCP copy of N MiB over loopback: the link's
own rate, against which a migration's effective rate is stated (issue 11).

The sender writes N MiB of random bytes (a 1 MiB block, repeated) over one
TCP connection to 127.0.0.1; the receiver reads them either into one
reused buffer (the link alone) or, with --fresh, into N MiB of memory it
has just mapped, as a migration's destination does with guest memory.
Prints one line: "tcp-copy: N MiB in S s, R MB/s (into ...)".
"""
import argparse
import mmap
import os
import socket
import sys
import threading
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=1024, help="MiB to copy (default 1024)")
    ap.add_argument("--fresh", action="store_true", help="receive into freshly mapped memory")
    a = ap.parse_args()
    if not 1 <= a.mib <= 65536:
        print("tcp-copy: --mib must be 1..65536", file=sys.stderr)
        return 2
    total = a.mib << 20
    block = os.urandom(1 << 20)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    got = [0]

    def receive():
        conn, _ = srv.accept()
        if a.fresh:
            mem = mmap.mmap(-1, total)
            view = memoryview(mem)
        else:
            buf = bytearray(1 << 20)
            view = memoryview(buf)
        n = 0
        while n < total:
            k = conn.recv_into(view[n:] if a.fresh else view)
            if not k:
                break
            n += k
        got[0] = n
        conn.close()

    t = threading.Thread(target=receive)
    t.start()
    c = socket.create_connection(("127.0.0.1", port))
    t0 = time.monotonic()
    for _ in range(a.mib):
        c.sendall(block)
    c.shutdown(socket.SHUT_WR)
    t.join(timeout=600)
    dt = time.monotonic() - t0
    c.close()
    srv.close()
    if got[0] != total:
        print(f"tcp-copy: received {got[0]} of {total} bytes", file=sys.stderr)
        return 1
    print(f"tcp-copy: {a.mib} MiB in {dt:.3f} s, {total / dt / 1e6:.0f} MB/s "
          f"(into {'fresh memory' if a.fresh else 'one reused buffer'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
