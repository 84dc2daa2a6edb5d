#!/usr/bin/env bash
# The peer node behind a mount, end to end:
#   - a folder of many .cascade files costs a handful of threads and
#     descriptors: before any read, after reading one file, and remounted
#     with every file cached, when every file is still served to peers
#     (data files opened on demand and closed when idle);
#   - what is held lives in the store alone: after an fdatasync fails (an
#     LD_PRELOAD shim, no test-only call into our code) the store forgets
#     the unsynced blocks, and a later read fetches them again instead of
#     failing.
# Counts, not timings: bounds on time only guard against hangs.
set -u
. "${CASCADE_SRC:?CASCADE_SRC not set}/tests/mount_lib.sh"

FILES=${CASCADE_TEST_FILES:-1000}
MAX_THREADS=16
MAX_FDS=64
SHIM="${CASCADE_HELPERS:-$CASCADE_BUILD/tests}/fail_io.so"

# threads PID / fds PID / own_threads PID (ours are named cascade-*).
threads() { ls "/proc/$1/task" | wc -l; }
fds() { ls "/proc/$1/fd" | wc -l; }
own_threads() { cat /proc/"$1"/task/*/comm 2>/dev/null | grep -c '^cascade-'; }

# ---- FILES small files and their .cascade files, written directly ----
DIR=$T/many
mkdir -p "$DIR"
want=$(python3 "$CASCADE_SRC/tests/lib/many_cascades.py" "$DIR" "$FILES") ||
    die "making $FILES files"
mkdir -p "$T/folder"
cp "$DIR"/*.cascade "$T/folder/"

start_tracker
start_seeder seeder "$T/seedcache" "$DIR"/*.cascade
OPTS="tracker=$TRACKER_ADDR,listen=127.0.0.1:0"

# ---- mounted: nothing per file before a read ----
M=$T/m
mount_fs "$T/m.log" "$M" -o "$OPTS,cache=$T/cache" "$T/folder" || die "mount of $FILES files"
t=$(threads "$MOUNT_PID") f=$(fds "$MOUNT_PID")
[ "$t" -le $MAX_THREADS ] && [ "$f" -le $MAX_FDS ] &&
    ok "$FILES files mounted: $t threads, $f descriptors" ||
    fail "$FILES files mounted: $t threads (at most $MAX_THREADS), $f descriptors (at most $MAX_FDS)"
[ "$(ls -l "$M" | grep -c '^-r')" = "$FILES" ] && ok "ls -l shows $FILES files" ||
    fail "ls -l shows $(ls "$M" | wc -l) files"
own=$(own_threads "$MOUNT_PID")

# ---- one file read end to end: the same threads of ours, few descriptors ----
cmp -s "$M/f0007" "$DIR/f0007" && ok "f0007 reads back byte for byte" || fail "f0007: wrong bytes"
t=$(own_threads "$MOUNT_PID") f=$(fds "$MOUNT_PID")
[ "$t" = "$own" ] && [ "$f" -le $MAX_FDS ] &&
    ok "after a read: still $t threads of ours, $f descriptors" ||
    fail "after a read: $t threads of ours (before: $own), $f descriptors"
unmount_fs "$M" "$MOUNT_PID"

# ---- filled, then remounted with everything cached ----
mount_fs "$T/fill.log" "$M" -o "$OPTS,cache=$T/cache,fill" "$T/folder" || die "mount with fill"
held=0
for i in $(seq 300); do   # bounded: 150 s
    held=$(for x in "$M"/*; do xattr "$x" blocks_held; echo; done | awk '{s += $1} END {print s}')
    [ "$held" = "$want" ] && break
    sleep 0.5
done
[ "$held" = "$want" ] && ok "fill fetched all $want blocks of $FILES files" ||
    fail "fill: $held of $want blocks held"
f=$(fds "$MOUNT_PID")
[ "$f" -le $MAX_FDS ] && ok "filled: $f descriptors" || fail "filled: $f descriptors"
unmount_fs "$M" "$MOUNT_PID"

mount_fs "$T/m2.log" "$M" -o "$OPTS,cache=$T/cache" "$T/folder" || die "remount"
t=$(threads "$MOUNT_PID") f=$(fds "$MOUNT_PID")
[ "$t" -le $MAX_THREADS ] && [ "$f" -le $MAX_FDS ] &&
    ok "remounted, all cached: $t threads, $f descriptors" ||
    fail "remounted, all cached: $t threads, $f descriptors"
stop_pid "$SEEDER_PID"
for i in 0003 $(printf %04d $((FILES / 2))) $(printf %04d $((FILES - 1))); do
    timeout 60 "$CASCADE" get "$T/folder/f$i.cascade" -o "$T/got$i" -t "$TRACKER_ADDR" \
        --cache "$T/getcache" --timeout 30 -q >"$T/get$i.out" 2>&1 &&
        cmp -s "$T/got$i" "$DIR/f$i" && ok "f$i served by the cached mount alone" ||
        fail "f$i from the cached mount: $(tail -2 "$T/get$i.out")"
done
f=$(fds "$MOUNT_PID")
[ "$f" -le $MAX_FDS ] && ok "after serving: $f descriptors" || fail "after serving: $f descriptors"
unmount_fs "$M" "$MOUNT_PID"

# ---- a failed fdatasync: the forgotten blocks are fetched again ----
if [ ! -w /proc/sys/vm/drop_caches ]; then
    echo "SKIP part: cannot drop the page cache (not root): fdatasync failure not tested"
else
    make_data "$T/film" $((2 * 1024 * 1024))
    "$CASCADE" create "$T/film" -b 64K -q >/dev/null || die "create film"
    start_seeder filmseeder "$T/filmcache" "$T/film.cascade"
    F=$T/f
    TRIGGER=$T/fail-next-fdatasync
    touch "$TRIGGER"
    # The shim wraps libc only; an ASan build must not insist on coming first.
    CASCADE_FAIL_FDATASYNC=$TRIGGER LD_PRELOAD=$SHIM \
        ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0 \
        mount_fs "$T/f.log" "$F" -o "$OPTS,cache=$T/fcache" "$T/film.cascade" || die "mount film"
    # A block lands (and a little read-ahead); their marks become due a
    # second later, and that fdatasync fails: the store forgets them.
    dd if="$F/film" of=/dev/null bs=64K count=1 status=none || fail "first read of film"
    for i in $(seq 100); do [ -e "$TRIGGER" ] || break; sleep 0.1; done
    [ ! -e "$TRIGGER" ] && ok "an fdatasync of the data file failed" ||
        fail "the shim never made fdatasync fail"
    held=$(xattr "$F/film" blocks_held)
    got=$(( $(xattr "$F/film" bytes_fetched) / 65536 ))
    [ "$held" -lt "$got" ] && ok "the store forgot the unsynced blocks ($held held of $got fetched)" ||
        fail "after the failed sync: $held held of $got fetched"

    sync
    echo 1 >/proc/sys/vm/drop_caches
    cmp -s "$F/film" "$T/film" && ok "film reads back whole after the failed sync" ||
        fail "film after the failed sync: EIO or wrong bytes: $(tail -3 "$T/f.log")"
    fetched=$(xattr "$F/film" bytes_fetched)
    [ "$fetched" -gt $((2 * 1024 * 1024)) ] && ok "the forgotten block was fetched again" ||
        fail "bytes fetched: $fetched"
    grep -q "could not be made durable" "$T/f.log" && ok "the failed sync is logged" ||
        fail "no log line about the failed sync"
    unmount_fs "$F" "$MOUNT_PID"
fi

[ "$failures" = 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "all passed"
