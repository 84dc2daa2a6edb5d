#!/usr/bin/env python3
"""Send one tracker request and print the answer (test helper).

usage: tracker_client.py PORT CMD HASHHEX IP PORT [--src IP] [--raw HEX] [--partial N]
Prints 'peers IP:PORT:GOOD ...' for status 0, or 'error STATUS MESSAGE'.
"""
import socket
import struct
import sys


def main():
    args = sys.argv[1:]
    src = None
    raw = None
    if "--src" in args:
        i = args.index("--src"); src = args[i + 1]; del args[i:i + 2]
    if "--raw" in args:
        i = args.index("--raw"); raw = bytes.fromhex(args[i + 1]); del args[i:i + 2]
    tport, cmd, hexhash, ip, port = args
    s = socket.socket()
    s.settimeout(10)
    if src:
        s.bind((src, 0))
    s.connect(("127.0.0.1", int(tport)))
    if raw is None:
        raw = (b"CASC" + struct.pack(">III", 1, int(cmd), 38) + bytes.fromhex(hexhash)
               + socket.inet_aton(ip) + struct.pack(">H", int(port)))
    s.sendall(raw)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    status, length = struct.unpack(">BI", data[:5])
    body = data[5:]
    if len(body) != length:
        print("short answer")
        return 1
    if status:
        print("error", status, body.decode())
        return 0
    peers = []
    for i in range(0, len(body), 12):
        pip = socket.inet_ntoa(body[i:i + 4])
        pport, = struct.unpack(">H", body[i + 4:i + 6])
        peers.append("%s:%d:%d" % (pip, pport, body[i + 10]))
    print("peers", " ".join(sorted(peers)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
