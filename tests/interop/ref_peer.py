#!/usr/bin/env python3
"""Reference peer.
  ref_peer.py download FILE.cascade --tracker IP:PORT -o OUT
  ref_peer.py serve FILE.cascade --data DATA --tracker IP:PORT [--listen IP:PORT]
serve subscribes (and again every 10 minutes) and prints 'serving on IP:PORT'."""
import argparse
import socket
import sys
import threading
import time

from cascade_ref import Meta, download, serve_forever, tracker_request


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["download", "serve"])
    ap.add_argument("cascade")
    ap.add_argument("--tracker", required=True)
    ap.add_argument("-o", "--output")
    ap.add_argument("--data")
    ap.add_argument("--listen", default="127.0.0.1:0")
    a = ap.parse_args()
    meta = Meta(a.cascade)
    if a.mode == "download":
        try:
            download(meta, a.tracker, a.output or meta.name)
        except Exception as e:  # a clear message and exit 1, like the teaching peer
            print("ref_peer: %s" % e, file=sys.stderr)
            return 1
        return 0
    data = open(a.data, "rb").read()
    host, port = a.listen.rsplit(":", 1)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(port)))
    s.listen(64)
    ip, port = s.getsockname()
    threading.Thread(target=serve_forever, args=(s, {meta.cascade_hash: meta},
                                                 {meta.cascade_hash: data}), daemon=True).start()
    tracker_request(a.tracker, 2, meta.cascade_hash, ip, port)
    print("serving on %s:%d" % (ip, port), flush=True)
    while True:
        time.sleep(600)
        tracker_request(a.tracker, 2, meta.cascade_hash, ip, port)


if __name__ == "__main__":
    sys.exit(main())
