#!/usr/bin/env bash
# Benchmark of cascadefs against `cascade get` and plain file reads, on
# loopback with two seeders. Prints each figure and its ratio to the target:
#   cold `cat` through the mount   >= 80% of `cascade get` throughput
#   warm `cat` through the mount   >= 70% of `cat` of the cache file itself
#   cold 4 KiB random read p50     <= 2 block-transfer times
#
#   contrib/bench/bench_mount.sh [BUILD_DIR]     (default: build)
# Env: SIZE_MB (256), BLOCK (1M), RANDOM_READS (200), ROUNDS (3 cold rounds),
# WARM_PAIRS (11; a warm read takes only ~0.1 s, so noise needs more of them).
# Throughput ratios are medians of per-round ratios.
set -u
SRC_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CASCADE_BUILD=$(cd "${1:-$SRC_ROOT/build}" && pwd)
. "$SRC_ROOT/tests/mount_lib.sh"

SIZE_MB=${SIZE_MB:-256}
BLOCK=${BLOCK:-1M}
RANDOM_READS=${RANDOM_READS:-200}
ROUNDS=${ROUNDS:-3}
WARM_PAIRS=${WARM_PAIRS:-11}
SIZE=$((SIZE_MB * 1024 * 1024))

now() { date +%s.%N; }
mbps() { python3 -c "import sys; print('%.1f' % ($SIZE / 1048576 / float(sys.argv[1])))" "$1"; }
elapsed() { python3 -c "import sys; print('%.3f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$2"; }
# share A B: A / B (of two times: the throughput of the second as a share of the first).
share() { python3 -c "import sys; print(float(sys.argv[1]) / float(sys.argv[2]))" "$1" "$2"; }
# pct X...: each share as a percentage.
pct() { python3 -c "import sys; print(' '.join('%.0f%%' % (100 * float(x)) for x in sys.argv[1:]))" "$@"; }
# ratio A B: A / B as a percentage.
ratio() { pct "$(share "$1" "$2")"; }

mkdir -p "$T/src"
echo "preparing a $SIZE_MB MiB file, blocks of $BLOCK ..."
make_data "$T/src/bench" "$SIZE"
"$CASCADE" create "$T/src/bench" -b "$BLOCK" -q >/dev/null || die "create"
CASC=$T/src/bench.cascade
BS=$(python3 -c "import struct, sys; print(struct.unpack('>Q', open(sys.argv[1], 'rb').read()[24:32])[0])" "$CASC")

start_tracker
start_seeder seed1 "$T/seedcache1" "$CASC"
start_seeder seed2 "$T/seedcache2" "$CASC"
OPTS="tracker=$TRACKER_ADDR,listen=127.0.0.1:0"

# timed_cat FILE: seconds one `cat FILE` takes.
timed_cat() {
    local t0 t1
    t0=$(now); cat "$1" >/dev/null || die "cat $1"; t1=$(now)
    elapsed "$t0" "$t1"
}
# median X...: the middle value (of an odd count; the upper middle otherwise).
median() { python3 -c "import sys; v = sorted(map(float, sys.argv[1:])); print(v[len(v) // 2])" "$@"; }

# ---- cold: cascade get vs cat through a fresh mount, ROUNDS times in turn,
# each on fresh caches; the figure is the median of the per-round ratios, so
# a burst of load on this shared machine skews one round, not the result.
M=$T/m
cold_ratios=() get_times=() cold_times=()
for r in $(seq "$ROUNDS"); do
    t0=$(now)
    "$CASCADE" get "$CASC" -o "$T/got" -t "$TRACKER_ADDR" --cache "$T/getcache$r" -q || die "cascade get"
    t1=$(now)
    get_s=$(elapsed "$t0" "$t1")
    cmp -s "$T/got" "$T/src/bench" || die "cascade get: wrong bytes"
    rm -rf "$T/got" "$T/getcache$r"

    [ "$r" = 1 ] || rm -rf "$T/cache"
    mount_fs "$T/m.log" "$M" -o "$OPTS,cache=$T/cache" "$CASC" || die "mount"
    cold_s=$(timed_cat "$M/bench")
    unmount_fs "$M" "$MOUNT_PID"
    get_times+=("$get_s") cold_times+=("$cold_s")
    cold_ratios+=("$(share "$get_s" "$cold_s")")
done
get_s=$(median "${get_times[@]}")
cold_s=$(median "${cold_times[@]}")
cold_ratio=$(median "${cold_ratios[@]}")

# ---- warm: every block held (the last cold round filled the cache). Remount
# (so the mount's own page cache is empty) and, when we may, drop the page
# cache before each reader, so both read the data file from disk; otherwise
# both read it from the page cache. Mount and plain reads alternate.
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; }
if drop_caches; then CACHE_NOTE="page cache dropped before each"; else CACHE_NOTE="data file in page cache"; fi
mount_fs "$T/m2.log" "$M" -o "$OPTS,cache=$T/cache" "$CASC" || die "remount"
DATA=$(find "$T/cache" -name data | head -1)
warm_ratios=() warm_times=() plain_times=()
for r in $(seq "$WARM_PAIRS"); do
    drop_caches || cat "$DATA" >/dev/null
    warm_s=$(timed_cat "$M/bench")
    drop_caches || cat "$DATA" >/dev/null
    plain_s=$(timed_cat "$DATA")
    warm_times+=("$warm_s") plain_times+=("$plain_s")
    warm_ratios+=("$(share "$plain_s" "$warm_s")")
done
warm_s=$(median "${warm_times[@]}")
plain_s=$(median "${plain_times[@]}")
warm_ratio=$(median "${warm_ratios[@]}")
# Through the mount from the kernel's cache of the mounted file itself.
cat "$M/bench" >/dev/null
hot_s=$(timed_cat "$M/bench")
cmp -s "$M/bench" "$T/src/bench" || die "warm read: wrong bytes"
unmount_fs "$M" "$MOUNT_PID"

# ---- cold random 4 KiB reads on a fresh cache ----
mount_fs "$T/m3.log" "$M" -o "$OPTS,cache=$T/cache-rand" "$CASC" || die "mount for random reads"
python3 - "$M/bench" "$SIZE" "$RANDOM_READS" "$BS" >"$T/random.out" <<'EOF'
import os, random, sys, time
path, size, n, bs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
fd = os.open(path, os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)   # no kernel read-ahead
blocks = random.Random(1).sample(range(size // bs), min(n, size // bs))  # each read a cold block
times = []
for b in blocks:
    off = b * bs + random.Random(b).randrange(0, bs - 4096) // 4096 * 4096
    t = time.perf_counter()
    if len(os.pread(fd, 4096, off)) != 4096:
        sys.exit("short read")
    times.append((time.perf_counter() - t) * 1000)
times.sort()
print("%.2f %.2f" % (times[len(times) // 2], times[min(len(times) - 1, len(times) * 99 // 100)]))
EOF
read -r p50 p99 <"$T/random.out"
[ -n "${p50:-}" ] || die "random reads failed"
unmount_fs "$M" "$MOUNT_PID"

# One block-transfer time, from `cascade get`'s throughput.
block_ms=$(python3 -c "print('%.2f' % ($get_s * 1000 * $BS / $SIZE))")

echo
echo "cascadefs benchmark: $SIZE_MB MiB, blocks of $BS bytes, 2 loopback seeders"
printf '%-38s %8s s  %8s MiB/s  (median of %s)\n' "cascade get (cold)" "$get_s" "$(mbps "$get_s")" "$ROUNDS"
printf '%-38s %8s s  %8s MiB/s  = %s of get (median ratio; target >= 80%%)\n' \
    "cat through mount (cold)" "$cold_s" "$(mbps "$cold_s")" "$(pct "$cold_ratio")"
echo "warm reads ($CACHE_NOTE; median of $WARM_PAIRS alternating pairs):"
printf '%-38s %8s s  %8s MiB/s\n' "cat of the cache file" "$plain_s" "$(mbps "$plain_s")"
printf '%-38s %8s s  %8s MiB/s  = %s of plain (median ratio; target >= 70%%)\n' \
    "cat through mount (warm)" "$warm_s" "$(mbps "$warm_s")" "$(pct "$warm_ratio")"
echo "  per-round ratios: cold $(pct "${cold_ratios[@]}"); warm $(pct "${warm_ratios[@]}")"
printf '%-38s %8s s  %8s MiB/s\n' "cat through mount (kernel cache)" "$hot_s" "$(mbps "$hot_s")"
printf '%-38s p50 %s ms  p99 %s ms  (block transfer %s ms; p50 = %s of it, target <= 200%%)\n' \
    "4 KiB random reads (cold)" "$p50" "$p99" "$block_ms" "$(ratio "$p50" "$block_ms")"
[ "$failures" = 0 ] || exit 1
