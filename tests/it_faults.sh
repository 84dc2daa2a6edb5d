#!/usr/bin/env bash
# Faults that must not cost availability (a real mount, a real seeder):
#   - a full cache filesystem (pwrite fails with ENOSPC through an
#     LD_PRELOAD shim) with no reader: a handful of fetch attempts per
#     block, a few log lines, no busy loop; a read in the middle of it fails
#     at once with ENOSPC; once space is back the next read works and the
#     fill completes without any read;
#   - SIGTERM with a read blocked on a block nobody has: the reader gets EIO
#     at once, cascadefs unmounts and exits 0, and a remount fetches nothing
#     already fetched; `cascade seed` stops promptly with 0 too.
# Counts and outcomes; time bounds only guard against hangs.
set -u
. "${CASCADE_SRC:?CASCADE_SRC not set}/tests/mount_lib.sh"

SHIM="${CASCADE_HELPERS:-$CASCADE_BUILD/tests}/fail_io.so"
KiB=1024
BLOCKS=64
make_data "$T/film" $((BLOCKS * 64 * KiB))
"$CASCADE" create "$T/film" -b 64K -q >/dev/null || die "create film"
start_tracker
start_seeder seeder "$T/seedcache" "$T/film.cascade" -v
OPTS="tracker=$TRACKER_ADDR,listen=127.0.0.1:0"

served() { grep -c "served block" "$T/seeder.err"; }
# cpu_ticks PID: user + system clock ticks the process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
seconds_since() { python3 -c "import sys, time; print('%.1f' % (time.time() - float(sys.argv[1])))" "$1"; }

# ---- a full disk for 10 s, nobody reading ----
FULL=$T/disk-is-full
touch "$FULL"
M=$T/m
CASCADE_FAIL_WRITE=$FULL LD_PRELOAD=$SHIM \
    ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0 \
    mount_fs "$T/full.log" "$M" -o "$OPTS,cache=$T/cache,fill" "$T/film.cascade" ||
    die "mount with a full disk"
before=$(served) ticks=$(cpu_ticks "$MOUNT_PID")
sleep 10
attempts=$(( $(served) - before ))
ticks=$(( $(cpu_ticks "$MOUNT_PID") - ticks ))
lines=$(wc -l <"$T/full.log")
hz=$(getconf CLK_TCK)
# No busy loop: well under half a core (a generous bound, as a guard; the
# figure is in contrib/bench/bench_faults.sh's output).
[ "$ticks" -lt $((10 * hz / 2)) ] && ok "full disk: $ticks CPU ticks in 10 s (of $((10 * hz)))" ||
    fail "full disk: $ticks CPU ticks in 10 s: a busy loop"
[ "$(xattr "$M/film" blocks_held)" = 0 ] || fail "blocks held on a full disk"
[ "$attempts" -le $((BLOCKS * 3)) ] &&
    ok "full disk, 10 s, no reader: $attempts fetches for $BLOCKS blocks" ||
    fail "full disk: $attempts fetches for $BLOCKS blocks (a refetch loop)"
[ "$lines" -lt 20 ] && ok "full disk: $lines log lines" || fail "full disk: $lines log lines"
grep -q "No space left on device" "$T/full.log" && ok "the log says why (ENOSPC)" ||
    fail "no ENOSPC in the log: $(tail -3 "$T/full.log")"

# A read in the middle of it fails at once (the kernel turns a failed page
# read into EIO), and the log says the true cause.
t0=$(date +%s.%N)
timeout 20 dd if="$M/film" of=/dev/null bs=64K count=1 skip=5 2>"$T/dd.err" &&
    fail "a read on a full disk succeeded?"
grep -qE "No space left on device|Input/output error" "$T/dd.err" &&
    grep -q "read of .* failed: No space left on device" "$T/full.log" &&
    ok "a read during the episode fails after $(seconds_since "$t0") s, logged as ENOSPC" ||
    fail "read during the episode: $(cat "$T/dd.err"); log: $(tail -2 "$T/full.log")"

# Space is back: the next read works, and the fill completes on its own.
rm -f "$FULL"
dd if="$M/film" of="$T/piece" bs=64K count=1 skip=9 status=none 2>"$T/dd2.err" &&
    dd if="$T/film" bs=64K count=1 skip=9 status=none | cmp -s - "$T/piece" &&
    ok "space back: the next read gives the right bytes" ||
    fail "space back: read failed: $(cat "$T/dd2.err")"
for i in $(seq 600); do   # bounded: 60 s (the fill's retry gap is at most 30 s)
    [ "$(xattr "$M/film" blocks_held)" = $BLOCKS ] && break
    sleep 0.1
done
[ "$(xattr "$M/film" blocks_held)" = $BLOCKS ] && ok "space back: the fill completed by itself" ||
    fail "space back: $(xattr "$M/film" blocks_held) of $BLOCKS blocks after 60 s"
cmp -s "$M/film" "$T/film" && ok "film reads back whole" || fail "film: wrong bytes"
unmount_fs "$M" "$MOUNT_PID"

# ---- SIGTERM with a read blocked on a block nobody has ----
# A second seeder holds only the second half of "half"; nobody has the
# first. (The second half, so that the kernel's read-ahead of what we read
# stays within what can be had.)
make_data "$T/half" $((16 * 64 * KiB))
"$CASCADE" create "$T/half" -b 64K -q >/dev/null || die "create half"
mkdir -p "$T/partial"
truncate -s $((8 * 64 * KiB)) "$T/partial/half"
tail -c $((8 * 64 * KiB)) "$T/half" >>"$T/partial/half"
start_seeder partial "$T/partialcache" "$T/half.cascade" --data "$T/partial/half"
H=$T/h
mount_fs "$T/h.log" "$H" -o "$OPTS,cache=$T/hcache,timeout=120" "$T/half.cascade" ||
    die "mount half"
H_PID=$MOUNT_PID
tail -c $((8 * 64 * KiB)) "$H/half" | cmp -s - <(tail -c $((8 * 64 * KiB)) "$T/half") &&
    ok "the second half reads" || fail "second half: wrong bytes"
dd if="$H/half" of=/dev/null bs=64K count=1 skip=2 2>"$T/blocked.err" &
reader=$!
sleep 1
kill -0 "$reader" 2>/dev/null && ok "a read waits for a block nobody has" ||
    fail "the read did not wait"
t0=$(date +%s.%N)
kill -TERM "$H_PID"
for i in $(seq 200); do kill -0 "$reader" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$reader" 2>/dev/null; then
    fail "the blocked read still waits 20 s after SIGTERM"
    kill "$reader" 2>/dev/null
else
    wait "$reader"
    rc=$?
    [ "$rc" != 0 ] && grep -q "Input/output error" "$T/blocked.err" &&
        ok "SIGTERM: the blocked read failed with EIO after $(seconds_since "$t0") s" ||
        fail "SIGTERM: the blocked read ended with $rc: $(cat "$T/blocked.err")"
fi
for i in $(seq 200); do kill -0 "$H_PID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$H_PID" 2>/dev/null; then
    fail "cascadefs still runs 20 s after SIGTERM"
else
    wait "$H_PID"
    rc=$?
    [ "$rc" = 0 ] && ok "cascadefs exited 0 after SIGTERM ($(seconds_since "$t0") s)" ||
        fail "cascadefs exited $rc after SIGTERM"
fi
mountpoint -q "$H" && fail "still mounted after SIGTERM" || ok "unmounted after SIGTERM"
mount_fs "$T/h2.log" "$H" -o "$OPTS,cache=$T/hcache" "$T/half.cascade" || die "remount half"
tail -c $((8 * 64 * KiB)) "$H/half" >/dev/null
[ "$(xattr "$H/half" bytes_fetched)" = 0 ] && ok "the remount fetched nothing already fetched" ||
    fail "the remount fetched $(xattr "$H/half" bytes_fetched) bytes again"
unmount_fs "$H" "$MOUNT_PID"

# ---- cascade seed stops promptly, with 0 ----
t0=$(date +%s.%N)
stop_pid "$SEEDER_PID"
rc=$?
[ "$rc" = 0 ] && ok "cascade seed exited 0 after SIGTERM ($(seconds_since "$t0") s)" ||
    fail "cascade seed: exit $rc after SIGTERM"

[ "$failures" = 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "all passed"
