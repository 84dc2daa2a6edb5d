#!/usr/bin/env python3
"""Reference peer.
  ref_peer.py download FILE.cascade --tracker IP:PORT -o OUT
  ref_peer.py serve FILE.cascade --data DATA --tracker IP:PORT [--listen IP:PORT]
  ref_peer.py swarm FILE.cascade --tracker IP:PORT -o OUT [--listen IP:PORT]
download fetches every block in order, one connection per block.
serve subscribes (and again every 10 minutes) and prints 'serving on IP:PORT'.
swarm behaves like the teaching peer in a swarm: it starts empty, prints
'serving on IP:PORT', serves what it holds while it fetches what is missing
(see cascade_ref.swarm), writes OUT once the whole file matches its hash,
prints 'done UNIX_TIME' and goes on serving like serve. Progress goes to stderr."""
import argparse
import hashlib
import socket
import sys
import threading
import time

from cascade_ref import (SUBSCRIBE_EVERY, Blocks, Meta, download, serve_forever, swarm,
                         tracker_request, tracker_try)


def listen(addr):
    host, port = addr.rsplit(":", 1)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(port)))
    s.listen(64)
    return s


def say(msg):
    print("ref_peer %.3f: %s" % (time.time(), msg), file=sys.stderr, flush=True)


def run_swarm(meta, a, me):
    """Fetch while serving; 0 once the output is written, 1 on failure."""
    blocks = Blocks(meta)
    threading.Thread(target=serve_forever, args=(a.sock, {meta.cascade_hash: blocks}),
                     daemon=True).start()
    print("serving on %s:%d" % me, flush=True)
    swarm(meta, a.tracker, me, blocks, say)
    data = blocks.data()
    if hashlib.sha256(data).digest() != meta.target_hash:
        say("every block matches but the whole file does not: a bad .cascade file")
        return 1
    with open(a.output or meta.name, "wb") as f:
        f.write(data)
    print("done %.3f" % time.time(), flush=True)
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["download", "serve", "swarm"])
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
    if a.mode == "serve" and not a.data:
        ap.error("serve needs --data")
    a.sock = listen(a.listen)
    me = a.sock.getsockname()
    if a.mode == "swarm":
        if run_swarm(meta, a, me) != 0:
            return 1
    else:
        blocks = Blocks(meta, open(a.data, "rb").read())
        threading.Thread(target=serve_forever, args=(a.sock, {meta.cascade_hash: blocks}),
                         daemon=True).start()
        tracker_request(a.tracker, 2, meta.cascade_hash, *me)
        print("serving on %s:%d" % me, flush=True)
    while True:
        time.sleep(SUBSCRIBE_EVERY)
        tracker_try(a.tracker, 2, meta, me, say)


if __name__ == "__main__":
    sys.exit(main())
