#!/usr/bin/env python3
"""Reference tracker: ref_tracker.py --listen IP:PORT --allow FILE.cascade...
Prints 'listening on IP:PORT' once ready."""
import argparse
import socket
import sys
import threading

from cascade_ref import Meta, Tracker


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--allow", action="append", default=[])
    a = ap.parse_args()
    tracker = Tracker(Meta(p).cascade_hash for p in a.allow)
    host, port = a.listen.rsplit(":", 1)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(port)))
    s.listen(64)
    print("listening on %s:%d" % s.getsockname(), flush=True)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=tracker.handle, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
