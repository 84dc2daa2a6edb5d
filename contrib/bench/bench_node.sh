#!/usr/bin/env bash
# What one peer node per process costs, shown on loopback (figures, not
# timed assertions; the targets are printed beside them):
#   1. a folder of FILES .cascade files mounted: threads and descriptors
#      before any read (<= 16, <= 64), the time of `ls -l`, after reading one
#      file, and remounted with every file cached (still served);
#   2. memory while reading a BIG file through a mount (1 MiB blocks): the
#      process's peak RSS (target < 32 MiB), its buffers and tables;
#   3. 16 MiB blocks from 3 seeders: the block buffers' peak against their
#      limit (bytes, not buffers), and given back when idle;
#   4. the tables with 64 KiB blocks of a BIG file and 100 known peers.
#
#   contrib/bench/bench_node.sh [BUILD_DIR]      (default: build)
# Env: FILES (1000), BIG (4G: the large file; 1G is quicker), PEERS (100).
set -u
SRC_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CASCADE_BUILD=$(cd "${1:-$SRC_ROOT/build}" && pwd)
. "$SRC_ROOT/tests/mount_lib.sh"

FILES=${FILES:-1000}
BIG=${BIG:-4G}
PEERS=${PEERS:-100}
MiB=$((1024 * 1024))

threads() { ls "/proc/$1/task" | wc -l; }
fds() { ls "/proc/$1/fd" | wc -l; }
hwm_kib() { sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$1/status"; }
rss_kib() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$1/status"; }
mib() { python3 -c "import sys; n = int(sys.argv[1]); print('%.1f MiB' % (n / 1048576) if n >= 1048576 else '%.1f KiB' % (n / 1024))" "$1"; }
verdict() { [ "$1" -le "$2" ] && echo "ok" || echo "MISSED"; }
now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print('%.3f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$2"; }

# Section 4 announces 99 made-up peers from this one address: let the
# tracker keep them all (by default one source holds 16 per hash).
start_tracker --max-ports-per-source 1000
OPTS="tracker=$TRACKER_ADDR,listen=127.0.0.1:0"
M=$T/m

# ---- 1. a folder of FILES files ----
echo "== 1. a folder of $FILES .cascade files"
mkdir -p "$T/many" "$T/folder"
blocks=$(python3 "$SRC_ROOT/tests/lib/many_cascades.py" "$T/many" "$FILES") || die "making files"
cp "$T/many"/*.cascade "$T/folder/"
start_seeder many "$T/manycache" "$T/many"/*.cascade
mount_fs "$T/m.log" "$M" -o "$OPTS,cache=$T/cache" "$T/folder" || die "mount"
t=$(threads "$MOUNT_PID") f=$(fds "$MOUNT_PID")
printf '  mounted, before any read:  %3d threads (<= 16 %s), %3d descriptors (<= 64 %s)\n' \
    "$t" "$(verdict "$t" 16)" "$f" "$(verdict "$f" 64)"
t0=$(now); n=$(ls -l "$M" | grep -c '^-r'); t1=$(now)
printf '  ls -l of %d files:          %s s\n' "$n" "$(elapsed "$t0" "$t1")"
cat "$M/f0007" >/dev/null
printf '  after reading one file:    %3d threads (libfuse workers included), %3d descriptors\n' \
    "$(threads "$MOUNT_PID")" "$(fds "$MOUNT_PID")"
unmount_fs "$M" "$MOUNT_PID"
mount_fs "$T/fill.log" "$M" -o "$OPTS,cache=$T/cache,fill" "$T/folder" || die "mount fill"
t0=$(now)
for i in $(seq 600); do
    held=$(for x in "$M"/*; do xattr "$x" blocks_held; echo; done | awk '{s += $1} END {print s}')
    [ "$held" = "$blocks" ] && break
    sleep 0.5
done
t1=$(now)
printf '  -o fill of all %d blocks:  %s s, at most %d descriptors seen at the end\n' "$blocks" \
    "$(elapsed "$t0" "$t1")" "$(fds "$MOUNT_PID")"
unmount_fs "$M" "$MOUNT_PID"
mount_fs "$T/m2.log" "$M" -o "$OPTS,cache=$T/cache" "$T/folder" || die "remount"
t=$(threads "$MOUNT_PID") f=$(fds "$MOUNT_PID")
printf '  remounted, all cached:     %3d threads (<= 16 %s), %3d descriptors (<= 64 %s)\n' \
    "$t" "$(verdict "$t" 16)" "$f" "$(verdict "$f" 64)"
stop_pid "$SEEDER_PID"
served=0
for k in 1 $((FILES / 3)) $((2 * FILES / 3)) $((FILES - 1)); do
    i=$(printf %04d "$k")
    "$CASCADE" get "$T/folder/f$i.cascade" -o "$T/got" -t "$TRACKER_ADDR" --cache "$T/gc" -q \
        --timeout 30 && cmp -s "$T/got" "$T/many/f$i" && served=$((served + 1))
    rm -f "$T/got"
done
printf '  served from the cache alone: %d of 4 files; then %d descriptors\n' "$served" \
    "$(fds "$MOUNT_PID")"
unmount_fs "$M" "$MOUNT_PID"
rm -rf "$T/many" "$T/folder" "$T/cache" "$T/manycache"

# ---- 2. memory while reading BIG through a mount ----
echo "== 2. reading a $BIG file through a mount (1 MiB blocks)"
mkdir -p "$T/big"
head -c "$BIG" /dev/urandom >"$T/big/big" || die "making $BIG"
"$CASCADE" create "$T/big/big" -b 1M -q >/dev/null || die "create big"
start_seeder bigseed "$T/bigcache" "$T/big/big.cascade"
mount_fs "$T/b.log" "$M" -o "$OPTS,cache=$T/bcache" "$T/big/big.cascade" || die "mount big"
t0=$(now); cat "$M/big" >/dev/null; t1=$(now)
hwm=$(hwm_kib "$MOUNT_PID")
printf '  cat of %s: %s s; peak RSS %s (< 32 MiB %s)\n' "$BIG" "$(elapsed "$t0" "$t1")" \
    "$(mib $((hwm * 1024)))" "$(verdict "$hwm" $((32 * 1024 - 1)))"
printf '  block buffers: peak %s of a %s limit; tables %s\n' \
    "$(mib "$(xattr "$M" buffers_peak)")" "$(mib "$(xattr "$M" buffers_limit)")" \
    "$(mib "$(xattr "$M" tables)")"
unmount_fs "$M" "$MOUNT_PID"
stop_pid "$SEEDER_PID"
rm -rf "$T/bcache" "$T/bigcache"

# ---- 3. 16 MiB blocks from 3 seeders: the buffer pool in bytes ----
echo "== 3. 16 MiB blocks from 3 seeders (256 MiB file)"
head -c $((256 * MiB)) "$T/big/big" >"$T/big/b16"
"$CASCADE" create "$T/big/b16" -b 16M -q >/dev/null || die "create b16"
seeders=()
for s in 1 2 3; do
    start_seeder "s16-$s" "$T/s16cache$s" "$T/big/b16.cascade"
    seeders+=("$SEEDER_PID")
done
mount_fs "$T/c.log" "$M" -o "$OPTS,cache=$T/ccache" "$T/big/b16.cascade" || die "mount b16"
cat "$M/b16" >/dev/null
peak=$(xattr "$M" buffers_peak) limit=$(xattr "$M" buffers_limit)
printf '  block buffers: peak %s, limit %s (%s); RSS peak %s\n' "$(mib "$peak")" \
    "$(mib "$limit")" "$(verdict "$peak" "$limit")" "$(mib $(($(hwm_kib "$MOUNT_PID") * 1024)))"
for i in $(seq 100); do [ "$(xattr "$M" buffers)" = 0 ] && break; sleep 0.1; done
printf '  idle after the read: buffers %s, RSS %s\n' "$(mib "$(xattr "$M" buffers)")" \
    "$(mib $(($(rss_kib "$MOUNT_PID") * 1024)))"
unmount_fs "$M" "$MOUNT_PID"
for p in "${seeders[@]}"; do stop_pid "$p"; done
rm -rf "$T"/s16cache* "$T/ccache" "$T/big/b16"*

# ---- 4. the tables: 64 KiB blocks of BIG, PEERS known peers ----
echo "== 4. 64 KiB blocks of the $BIG file, $PEERS known peers"
"$CASCADE" create "$T/big/big" -b 64K -f -q >/dev/null || die "create big 64K"
start_seeder b64 "$T/b64cache" "$T/big/big.cascade"
# PEERS - 1 more peers the tracker lists: loopback addresses nobody serves on.
python3 - "$TRACKER_ADDR" "$T/big/big.cascade" "$PEERS" <<'PY'
import hashlib, socket, struct, sys
host, port = sys.argv[1].rsplit(":", 1)
h = hashlib.sha256(open(sys.argv[2], "rb").read()).digest()
for i in range(1, int(sys.argv[3])):
    ip = socket.inet_aton("127.0.%d.%d" % (1 + i // 250, 1 + i % 250))
    body = h + ip + struct.pack(">H", 40000 + i)
    s = socket.create_connection((host, int(port)))
    s.sendall(b"CASC" + struct.pack(">III", 1, 2, len(body)) + body)
    s.recv(65536)
    s.close()
PY
mount_fs "$T/d.log" "$M" -o "$OPTS,cache=$T/dcache" "$T/big/big.cascade" || die "mount 64K"
cat "$M/big" >/dev/null &
reader=$!
for i in $(seq 600); do   # the tracker answers 20 a time: list until most are known
    known=$(xattr "$M/big" peers_known)
    [ "${known:-0}" -ge $((PEERS * 9 / 10)) ] && break
    kill -0 "$reader" 2>/dev/null || break
    sleep 0.5
done
wait "$reader"
count=$(xattr "$M/big" blocks_total)
printf '  %s blocks, %s peers known: tables %s (worst case: 2 B per block + one 1-bit-per-block\n' \
    "$count" "$(xattr "$M/big" peers_known)" "$(mib "$(xattr "$M" tables)")"
printf '    "lacks" map per peer that answered status 2 = %s); peak RSS %s\n' \
    "$(mib $((2 * count + PEERS * (count / 8 + 1))))" "$(mib $(($(hwm_kib "$MOUNT_PID") * 1024)))"
unmount_fs "$M" "$MOUNT_PID"
echo "done"
