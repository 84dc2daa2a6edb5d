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
import sys
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


def wait_listed(tracker, meta, wanted, seconds):
    """True once the tracker lists every (ip, port) in wanted for meta's
    file (or, with wanted empty, any peer); False with a message on stderr
    after seconds."""
    end = time.monotonic() + seconds
    last = "not listed yet"
    while time.monotonic() < end:
        try:
            got = set(tracker_request(tracker, 1, meta.cascade_hash, "0.0.0.0", 0))
            if (got and not wanted) or (wanted and set(wanted) <= got):
                return True
            last = "not listed yet"
        except (RuntimeError, ConnectionError, OSError, struct.error) as e:
            last = e
        time.sleep(0.1)
    print("tracker %s never listed %s: %s" % (
        tracker, " ".join("%s:%d" % p for p in wanted) or "a peer", last), file=sys.stderr)
    return False


class Blocks:
    """The blocks of one file a peer holds (all of them, or none at first);
    thread-safe, since a peer serves while it downloads."""

    def __init__(self, meta, data=None):
        self.meta = meta
        self.lock = threading.Lock()
        if data is None:
            self.held = [None] * meta.count
        else:
            self.held = [data[i * meta.block_size:i * meta.block_size + meta.block_len(i)]
                         for i in range(meta.count)]

    def get(self, i):
        with self.lock:
            return self.held[i]

    def put(self, i, body):
        with self.lock:
            self.held[i] = body

    def missing(self):
        with self.lock:
            return [i for i, b in enumerate(self.held) if b is None]

    def data(self):
        with self.lock:
            return b"".join(self.held)


def serve_forever(listen_sock, blocks_by_hash):
    """A thread per connection, each served until it closes; several
    requests in turn. A block not held yet gets status 2 and the
    connection stays open."""
    def handle(conn):
        with conn:
            try:
                while True:
                    req = recv_exact(conn, 64)
                    if req[:8] != MAGIC:
                        answer(conn, 4, b"Bad request")
                        return
                    block, = struct.unpack(">Q", req[24:32])
                    blocks = blocks_by_hash.get(req[32:64])
                    if blocks is None:
                        answer(conn, 1, b"Unknown cascade")
                        return
                    if block >= blocks.meta.count:
                        answer(conn, 3, b"Block out of range")
                        return
                    body = blocks.get(block)
                    if body is None:
                        answer(conn, 2, b"Block not present")
                    else:
                        answer(conn, 0, body)
            except (ConnectionError, OSError):
                return

    def answer(conn, status, body):
        conn.sendall(struct.pack(">BQ", status, len(body)) + body)

    while True:
        conn, _ = listen_sock.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def fetch_block(meta, peer, i):
    """One connection, one request: the block's bytes when the peer sent
    the right ones, else None (not held, error, wrong length or hash)."""
    try:
        with socket.create_connection(peer, timeout=10) as s:
            s.sendall(MAGIC + bytes(16) + struct.pack(">Q", i) + meta.cascade_hash)
            status, length = struct.unpack(">BQ", recv_exact(s, 9))
            if status != 0 or length != meta.block_len(i):
                return None
            body = recv_exact(s, length)
    except (ConnectionError, OSError):
        return None
    return body if hashlib.sha256(body).digest() == meta.hashes[i] else None


def download(meta, tracker, out_path):
    """One connection per block, as the teaching peer does."""
    peers = tracker_request(tracker, 1, meta.cascade_hash, "0.0.0.0", 0)
    if not peers and meta.count:
        raise RuntimeError("tracker knows no peer")
    out = bytearray()
    for i in range(meta.count):
        got = None
        for peer in random.sample(peers, len(peers)):
            got = fetch_block(meta, peer, i)
            if got is not None:
                break
        if got is None:
            raise RuntimeError("no peer gave a good block %d" % i)
        out += got
    if hashlib.sha256(out).digest() != meta.target_hash:
        raise RuntimeError("whole-file hash mismatch")
    with open(out_path, "wb") as f:
        f.write(out)


LIST_GAP = 30          # never list the tracker again sooner than this
LIST_EVERY = 300       # list again this often even with peers left
SUBSCRIBE_EVERY = 600  # the tracker forgets a peer after 1800 s


def tracker_try(tracker, command, meta, me, say):
    """A tracker request that never raises: the list, or [] after a
    message (the peer carries on and tries again later)."""
    try:
        return tracker_request(tracker, command, meta.cascade_hash, *me)
    except (RuntimeError, ConnectionError, OSError, struct.error) as e:
        say("tracker %s: %s" % (tracker, e))
        return []


def swarm(meta, tracker, me, blocks, say):
    """Download while serving, as the teaching peer does: a random missing
    block from a random listed peer, one block per connection. A peer that
    answers anything but the block (not held, an error, a bad block) is
    forgotten for the rest of the current list. The tracker is listed again
    when the list is used up or every LIST_EVERY seconds, never sooner than
    LIST_GAP seconds after the last time; the peer subscribes first (holding
    nothing, so it may answer status 2) and every SUBSCRIBE_EVERY seconds.
    me is the (ip, port) blocks are served on. Returns when every block is
    held; serving is the caller's (serve_forever on blocks)."""
    peers = tracker_try(tracker, 2, meta, me, say)  # subscribe answers the list too
    listed = subscribed = time.monotonic()
    say("subscribed; listed %d peers" % len(peers))
    while True:
        missing = blocks.missing()
        if not missing:
            return
        now = time.monotonic()
        if now - subscribed >= SUBSCRIBE_EVERY:
            tracker_try(tracker, 2, meta, me, say)
            subscribed = now
        if (not peers or now - listed >= LIST_EVERY) and now - listed >= LIST_GAP:
            peers = tracker_try(tracker, 1, meta, me, say)
            listed = now
            say("listed %d peers, %d blocks missing" % (len(peers), len(missing)))
        if not peers:
            time.sleep(max(0.0, listed + LIST_GAP - now))
            continue
        peer = random.choice(peers)
        i = random.choice(missing)
        body = fetch_block(meta, peer, i)
        if body is None:
            peers.remove(peer)
        else:
            blocks.put(i, body)
            held = meta.count - len(missing) + 1
            if held * 10 // meta.count > (held - 1) * 10 // meta.count:
                say("held %d of %d blocks" % (held, meta.count))


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
