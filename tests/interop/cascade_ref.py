"""A small reference implementation of the Cascade protocol, version 1,
written from PROTOCOL.md alone and behaving as it says the teaching tracker
and peer do. It stands in for them (we do not ship them) so the interop test
can run our programs against an independent implementation in both
directions. Standard library only."""
import hashlib
import os
import random
import socket
import struct
import threading
import time

MAGIC = b"CASCADE1"


class Meta:
    """A parsed .cascade file; refuses malformed ones like the spec says."""

    def __init__(self, path):
        raw = open(path, "rb").read()
        if len(raw) < 64 or raw[:8] != MAGIC:
            raise ValueError("%s: not a .cascade file" % path)
        self.size, self.block_size = struct.unpack(">QQ", raw[16:32])
        if self.block_size == 0:
            raise ValueError("%s: block size 0" % path)
        self.count = (self.size + self.block_size - 1) // self.block_size
        if len(raw) != 64 + 32 * self.count:
            raise ValueError("%s: wrong length" % path)
        self.target_hash = raw[32:64]
        self.hashes = [raw[64 + 32 * i:96 + 32 * i] for i in range(self.count)]
        self.cascade_hash = hashlib.sha256(raw).digest()
        base = os.path.basename(path)
        self.name = base[:-8] if base.endswith(".cascade") else base

    def block_len(self, i):
        return min(self.block_size, self.size - i * self.block_size)


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return bytes(buf)


def tracker_request(tracker, command, cascade_hash, ip, port):
    host, tport = tracker.rsplit(":", 1)
    with socket.create_connection((host, int(tport)), timeout=10) as s:
        s.sendall(b"CASC" + struct.pack(">III", 1, command, 38) + cascade_hash
                  + socket.inet_aton(ip) + struct.pack(">H", port))
        status, length = struct.unpack(">BI", recv_exact(s, 5))
        body = recv_exact(s, length)
    if status != 0:
        raise RuntimeError("tracker: " + body.decode(errors="replace"))
    return [(socket.inet_ntoa(body[i:i + 4]), struct.unpack(">H", body[i + 4:i + 6])[0])
            for i in range(0, len(body), 12)]


def serve_forever(listen_sock, metas_by_hash, datas):
    """Serves each connection until it closes; several requests in turn."""
    def handle(conn):
        with conn:
            try:
                while True:
                    req = recv_exact(conn, 64)
                    if req[:8] != MAGIC:
                        answer(conn, 4, b"Bad request")
                        return
                    block, = struct.unpack(">Q", req[24:32])
                    meta = metas_by_hash.get(req[32:64])
                    if meta is None:
                        answer(conn, 1, b"Unknown cascade")
                        return
                    if block >= meta.count:
                        answer(conn, 3, b"Block out of range")
                        return
                    data = datas[meta.cascade_hash]
                    off = block * meta.block_size
                    answer(conn, 0, data[off:off + meta.block_len(block)])
            except (ConnectionError, OSError):
                return

    def answer(conn, status, body):
        conn.sendall(struct.pack(">BQ", status, len(body)) + body)

    while True:
        conn, _ = listen_sock.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def download(meta, tracker, out_path):
    """One connection per block, as the teaching peer does."""
    peers = tracker_request(tracker, 1, meta.cascade_hash, "0.0.0.0", 0)
    if not peers and meta.count:
        raise RuntimeError("tracker knows no peer")
    out = bytearray()
    for i in range(meta.count):
        got = None
        for ip, port in random.sample(peers, len(peers)):
            try:
                with socket.create_connection((ip, port), timeout=10) as s:
                    s.sendall(MAGIC + bytes(16) + struct.pack(">Q", i) + meta.cascade_hash)
                    status, length = struct.unpack(">BQ", recv_exact(s, 9))
                    if status != 0 or length != meta.block_len(i):
                        continue
                    body = recv_exact(s, length)
            except (ConnectionError, OSError):
                continue
            if hashlib.sha256(body).digest() == meta.hashes[i]:
                got = body
                break
        if got is None:
            raise RuntimeError("no peer gave a good block %d" % i)
        out += got
    if hashlib.sha256(out).digest() != meta.target_hash:
        raise RuntimeError("whole-file hash mismatch")
    with open(out_path, "wb") as f:
        f.write(out)


class Tracker:
    """Allow-list, both commands answer the list, subscribe records
    (ip, port, now), requester left out, at most 20, shuffled, good first,
    1800 s expiry, status 1 with a message for anything wrong. Trusts the
    body IP."""

    def __init__(self, allowed):
        self.allowed = set(allowed)
        self.peers = {}
        self.lock = threading.Lock()

    def handle(self, conn):
        with conn:
            try:
                req = recv_exact(conn, 54)
            except (ConnectionError, OSError):
                return
            magic, version, command, length = req[:4], *struct.unpack(">III", req[4:16])
            h, ip, port = req[16:48], socket.inet_ntoa(req[48:52]), struct.unpack(">H", req[52:54])[0]
            if magic != b"CASC" or version != 1 or length != 38 or command not in (1, 2):
                return self.refuse(conn, b"Bad request")
            if h not in self.allowed:
                return self.refuse(conn, b"Unknown cascade")
            now = int(time.time())
            with self.lock:
                table = self.peers.setdefault(h, {})
                if command == 2:
                    table[(ip, port)] = now
                live = [(p, t) for p, t in table.items() if now - t < 1800 and p != (ip, port)]
            random.shuffle(live)
            body = b"".join(socket.inet_aton(p[0]) + struct.pack(">HIBB", p[1], t, 0, 0)
                            for p, t in live[:20])
            conn.sendall(struct.pack(">BI", 0, len(body)) + body)

    @staticmethod
    def refuse(conn, msg):
        conn.sendall(struct.pack(">BI", 1, len(msg)) + msg)
