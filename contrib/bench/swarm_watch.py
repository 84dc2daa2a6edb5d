#!/usr/bin/env python3
"""Helpers of bench_swarm.sh that speak Cascade or poll peers cheaply.

  swarm_watch.py listed TRACKER FILE.cascade IP:PORT... SECONDS
      Exit 0 once the tracker lists every IP:PORT for the file, 1 after
      SECONDS (run it in a host that reaches the tracker).
  swarm_watch.py peers T0 DEADLINE SPECFILE [PROGRESS]
      Poll every peer in SPECFILE every 0.1 s from T0 on (Unix times) until
      all are complete or DEADLINE; print 'NAME done SECONDS' (from T0) as
      each completes, then 'NAME unfinished WHAT' or 'NAME exited WHAT' for
      the others. With PROGRESS, also write there every 0.5 s a line
      'SECONDS NAME FRACTION' per unfinished seed or fill peer (how much of
      the file it holds), to see how a swarm spreads the file. SPECFILE lines: NAME KIND PID PATH SIZE BLOCKS, KIND:
        seed  PATH is the data file; complete when it has no hole (the store
              writes a block only after its hash matched, into a sparse file)
        fill  PATH is the file in a mount, seen through /proc/PID/root;
              complete when user.cascade.blocks_held == BLOCKS
        ref   PATH is the reference peer's folder (its stdout in out, stderr
              in err); complete at the time on its 'done UNIX_TIME' line
No hashing here: the caller compares every output once all are done."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "tests", "interop"))
from cascade_ref import Meta, wait_listed  # noqa: E402

POLL = 0.1


def listed(tracker, cascade, wanted, seconds):
    want = [(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])) for a in wanted]
    return 0 if wait_listed(tracker, Meta(cascade), want, seconds) else 1


def data_bytes(path, size):
    """Bytes of path not in a hole (ENOENT: 0)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return 0
    try:
        if os.fstat(fd).st_size != size:
            return 0
        total, off = 0, 0
        while off < size:
            try:
                start = os.lseek(fd, off, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            total += end - start
            off = end
        return total
    finally:
        os.close(fd)


def seed_fraction(path, size, _blocks):
    return data_bytes(path, size) / max(size, 1)


def fill_fraction(path, _size, blocks):
    try:
        return int(os.getxattr(path, "user.cascade.blocks_held")) / max(blocks, 1)
    except (OSError, ValueError):
        return 0.0


def seed_state(path, size, _blocks):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None, "no data file yet"
    try:
        full = os.fstat(fd).st_size == size and os.lseek(fd, 0, os.SEEK_HOLE) >= size
    finally:
        os.close(fd)
    if full:
        return time.time(), ""
    return None, "%.0f%% of the data file written" % (100.0 * data_bytes(path, size) / max(size, 1))


def fill_state(path, _size, blocks):
    try:
        held = int(os.getxattr(path, "user.cascade.blocks_held"))
    except (OSError, ValueError):
        return None, "not mounted yet"
    return (time.time(), "") if held >= blocks else (None, "%d of %d blocks" % (held, blocks))


def ref_state(path, _size, _blocks):
    try:
        with open(os.path.join(path, "out")) as f:
            for line in f:
                if line.startswith("done "):
                    return float(line.split()[1]), ""
        with open(os.path.join(path, "err")) as f:
            held = [line for line in f if " held " in line]
    except (OSError, ValueError):
        return None, "not started"
    return None, held[-1].split(": ", 1)[1].strip() if held else "no block yet"


STATES = {"seed": seed_state, "fill": fill_state, "ref": ref_state}
FRACTIONS = {"seed": seed_fraction, "fill": fill_fraction}
PROGRESS_EVERY = 0.5


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def write_progress(out, t0, left):
    now = time.time()
    for name, (kind, _pid, path, size, blocks) in left.items():
        if kind in FRACTIONS:
            out.write("%.2f %s %.4f\n" % (now - t0, name, FRACTIONS[kind](path, size, blocks)))
    out.flush()


def peers(t0, deadline, specfile, progress=None):
    left = {}
    for line in open(specfile):
        name, kind, pid, path, size, blocks = line.split()
        left[name] = (kind, int(pid), path, int(size), int(blocks))
    out = open(progress, "w") if progress else None
    time.sleep(max(0.0, t0 - time.time()))
    why = {}
    next_progress = time.time()
    while left and time.time() < deadline:
        if out and time.time() >= next_progress:
            write_progress(out, t0, left)
            next_progress += PROGRESS_EVERY
        for name, (kind, pid, path, size, blocks) in list(left.items()):
            done, why[name] = STATES[kind](path, size, blocks)
            if done is not None:
                print("%s done %.2f" % (name, done - t0), flush=True)
                del left[name]
            elif not alive(pid):
                print("%s exited %s" % (name, why[name]), flush=True)
                del left[name]
        time.sleep(POLL)
    for name in left:
        print("%s unfinished %s" % (name, why.get(name, "")), flush=True)
    return 0


def main(argv):
    if len(argv) >= 5 and argv[1] == "listed":
        return listed(argv[2], argv[3], argv[4:-1], float(argv[-1]))
    if len(argv) in (5, 6) and argv[1] == "peers":
        return peers(float(argv[2]), float(argv[3]), argv[4], argv[5] if len(argv) == 6 else None)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
