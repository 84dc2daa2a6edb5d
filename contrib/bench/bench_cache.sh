#!/usr/bin/env bash
# The bounded cache, measured: a file far larger than -o cache_max read end
# to end through a mount, on loopback with one seeder. Prints
#   - the read's time and throughput, and whether its SHA-256 matched;
#   - the size of the cache folder sampled during the read (every 50 ms):
#     how many samples, the largest, and the limit plus two blocks;
#   - the bytes fetched, as a share of the file (the target: at most 110%);
#   - what `cascade cache ls` says afterwards;
# and, given a second build (say main's), bench_mount.sh's cold and warm
# figures of both builds, alternating, so the cost of the cache machinery
# on a mount without a limit shows (the target: within 5%).
#
#   contrib/bench/bench_cache.sh [BUILD_DIR [BASE_BUILD_DIR]]   (default: build)
# Env: SIZE_MB (1024), LIMIT (64M), BLOCK (1M), MOUNT_ROUNDS (2: bench_mount
# runs per build; the machine is shared and noisy).
set -u
SRC_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CASCADE_BUILD=$(cd "${1:-$SRC_ROOT/build}" && pwd)
BASE_BUILD=${2:+$(cd "$2" && pwd)}
. "$SRC_ROOT/tests/mount_lib.sh"

SIZE_MB=${SIZE_MB:-1024}
LIMIT=${LIMIT:-64M}
BLOCK=${BLOCK:-1M}
MOUNT_ROUNDS=${MOUNT_ROUNDS:-2}
SIZE=$((SIZE_MB * 1024 * 1024))

echo "preparing a $SIZE_MB MiB file, blocks of $BLOCK ..."
make_data "$T/film" "$SIZE"
"$CASCADE" create "$T/film" -b "$BLOCK" -q >/dev/null || die "create"
CASC=$T/film.cascade
BS=$(python3 -c "import struct, sys; print(struct.unpack('>Q', open(sys.argv[1], 'rb').read()[24:32])[0])" "$CASC")
LIMIT_BYTES=$(python3 -c "import sys; s = sys.argv[1]; u = {'K': 10, 'M': 20, 'G': 30, 'T': 40}
print(int(s[:-1]) << u[s[-1].upper()] if s[-1].upper() in u else int(s))" "$LIMIT")
WANT=$(sha256sum <"$T/film" | cut -d' ' -f1)
start_tracker
start_seeder seeder "$T/seedcache" "$CASC"

M=$T/m
C=$T/cache
mount_fs "$T/m.log" "$M" -o "tracker=$TRACKER_ADDR,listen=127.0.0.1:0,cache=$C,cache_max=$LIMIT" \
    "$CASC" || die "mount"
( while :; do du -s --block-size=1 "$C" 2>/dev/null | cut -f1; sleep 0.05; done ) >"$T/samples" &
SAMPLER=$!
t0=$(date +%s.%N)
got=$(sha256sum <"$M/film" | cut -d' ' -f1)
t1=$(date +%s.%N)
kill "$SAMPLER"; wait "$SAMPLER" 2>/dev/null
fetched=$(xattr "$M/film" bytes_fetched)
unmount_fs "$M" "$MOUNT_PID"

python3 - "$T/samples" "$t0" "$t1" "$SIZE" "$fetched" "$LIMIT_BYTES" "$BS" "$got" "$WANT" <<'EOF'
import statistics, sys
path, t0, t1, size, fetched, limit, bs, got, want = sys.argv[1:]
t0, t1, size, fetched, limit, bs = float(t0), float(t1), int(size), int(fetched or 0), int(limit), int(bs)
samples = [int(x) for x in open(path).read().split() if x.isdigit()]
mib = 1024 * 1024
print()
print("bounded cache: %d MiB file, cache_max %d MiB, blocks of %d bytes, 1 loopback seeder"
      % (size // mib, limit // mib, bs))
print("%-34s %8.2f s  %8.1f MiB/s  sha256 %s" % ("cat through the mount", t1 - t0,
      size / mib / (t1 - t0), "matches" if got == want else "WRONG"))
if samples:
    top = max(samples)
    print("%-34s %d samples: largest %.2f MiB, median %.2f MiB (limit + 2 blocks: %.2f MiB) %s"
          % ("cache folder during the read", len(samples), top / mib,
             statistics.median(samples) / mib, (limit + 2 * bs) / mib,
             "within" if top <= limit + 2 * bs else "OVER"))
print("%-34s %.1f MiB = %.1f%% of the file (target <= 110%%)"
      % ("fetched", fetched / mib, 100.0 * fetched / size))
EOF
echo
"$CASCADE" cache ls --cache "$C"
echo

# ---- bench_mount.sh, this build and the base build in turn ----
if [ -n "$BASE_BUILD" ]; then
    for r in $(seq "$MOUNT_ROUNDS"); do
        for b in "$CASCADE_BUILD" "$BASE_BUILD"; do
            echo "== bench_mount.sh round $r: $b"
            bash "$SRC_ROOT/contrib/bench/bench_mount.sh" "$b" 2>&1 |
                grep -E 'cat through mount \((cold|warm)\)|cascade get \(cold\)'
        done
    done
fi
[ "$got" = "$WANT" ] || exit 1
