#!/usr/bin/env python3
"""many_cascades.py FOLDER COUNT: COUNT small random files fNNNN (2000 to
3499 bytes, reproducible) and their fNNNN.cascade files (1 KiB blocks),
written directly from PROTOCOL.md section 1 (quicker than COUNT runs of
`cascade create`). Prints the total number of blocks."""
import hashlib
import random
import struct
import sys

BLOCK = 1024


def main():
    folder, count = sys.argv[1], int(sys.argv[2])
    rng = random.Random(7)
    blocks = 0
    for i in range(count):
        data = rng.randbytes(2000 + i % 1500)
        name = "%s/f%04d" % (folder, i)
        with open(name, "wb") as f:
            f.write(data)
        hashes = b"".join(hashlib.sha256(data[j:j + BLOCK]).digest()
                          for j in range(0, len(data), BLOCK))
        head = (b"CASCADE1" + bytes(8) + struct.pack(">QQ", len(data), BLOCK)
                + hashlib.sha256(data).digest())
        with open(name + ".cascade", "wb") as f:
            f.write(head + hashes)
        blocks += (len(data) + BLOCK - 1) // BLOCK
    print(blocks)


if __name__ == "__main__":
    main()
