#!/usr/bin/env bash
# Integration test for how `cascade get` writes and shows a download, with a
# real tracker, a slow peer (tests/helpers/bad_peer --mode slow: a transfer
# that lasts) and a real seeder on loopback:
#   - it downloads into NAME.part; SIGTERM or SIGKILL mid-transfer leaves
#     NAME.part and no NAME (SIGTERM: exit 1 and a message saying how to
#     resume); a rerun resumes (fetches only what is missing) and renames;
#   - the held record follows the rename: `cascade seed` of NAME with the
#     same cache verifies nothing again;
#   - an existing NAME is completed in place (no NAME.part);
#   - on a terminal the progress line has percent, a bar, binary units, a
#     rate, the time left and the peers; the summary says MiB/s.
set -u
. "${CASCADE_SRC:?CASCADE_SRC not set}/tests/swarm_lib.sh"
[ -x "$BAD_PEER" ] || skip "$BAD_PEER is not built"

SRC=$T/src
mkdir -p "$SRC"
SIZE=$((3 * 1024 * 1024 + 4567))      # about 12 s from the slow peer
make_data "$SRC/film" $SIZE
"$CASCADE" create "$SRC/film" -b 64K -q >/dev/null || die "create"
start_tracker

# start_slow: the slow peer, subscribed; sets SLOW_PID.
start_slow() {
    "$BAD_PEER" --listen 127.0.0.1:0 --cascade "$SRC/film.cascade" --data "$SRC/film" --mode slow \
        --tracker "$TRACKER_ADDR" >"$T/slow.out" 2>"$T/slow.err" &
    SLOW_PID=$!
    OUR_PIDS+=($SLOW_PID)
    wait_for_line "$T/slow.out" 'listening on' 10 || die "slow peer: $(cat "$T/slow.err")"
}

# some_fetched PART LOG: wait (up to 30 s) until PART exists and the -v LOG
# says a few blocks were fetched into it.
some_fetched() {
    local i
    for i in $(seq 300); do
        [ -f "$1" ] && [ "$(grep -c 'fetched block' "$2")" -ge 3 ] && return 0
        sleep 0.1
    done
    return 1
}

# fetched_bytes LOG: the bytes the node says it fetched.
fetched_bytes() {
    sed -n 's/.*fetched \([0-9]*\) bytes;.*/\1/p' "$1" | tail -1
}

start_slow
mkdir -p "$T/out"
# ---- SIGTERM mid-transfer ----
"$CASCADE" get "$SRC/film.cascade" -o "$T/out/film" -t "$TRACKER_ADDR" --cache "$T/gc" \
    -v >"$T/get1.out" 2>"$T/get1.err" &
GET=$!
OUR_PIDS+=($GET)
some_fetched "$T/out/film.part" "$T/get1.err" ||
    fail "no NAME.part with data while downloading: $(ls "$T/out")"
kill -TERM "$GET"
wait "$GET"
rc=$?
[ $rc -eq 1 ] && grep -q "cascade get: interrupted: [0-9]* of 49 blocks are kept in .*film.part; run the same command again to resume" "$T/get1.err" &&
    ok "SIGTERM: exit 1, says how to resume" || fail "SIGTERM: exit $rc: $(cat "$T/get1.err")"
[ -f "$T/out/film.part" ] && [ ! -e "$T/out/film" ] && ok "SIGTERM: NAME.part kept, no NAME" ||
    fail "after SIGTERM: $(ls "$T/out")"

# ---- SIGKILL mid-transfer (from a fresh start) ----
"$CASCADE" get "$SRC/film.cascade" -o "$T/out/film2" -t "$TRACKER_ADDR" --cache "$T/gc2" \
    -v >/dev/null 2>"$T/get2.err" &
GET=$!
OUR_PIDS+=($GET)
some_fetched "$T/out/film2.part" "$T/get2.err" || fail "no film2.part with data: $(ls "$T/out")"
kill -KILL "$GET"
wait "$GET" 2>/dev/null
[ -f "$T/out/film2.part" ] && [ ! -e "$T/out/film2" ] && ok "SIGKILL: NAME.part kept, no NAME" ||
    fail "after SIGKILL: $(ls "$T/out")"
stop_pid "$SLOW_PID"

# ---- reruns resume from a fast seeder, and rename ----
start_seeder seeder "$T/seedcache" "$SRC/film.cascade"
for name in film film2; do
    cache=$T/gc; [ $name = film2 ] && cache=$T/gc2
    timeout 120 "$CASCADE" get "$SRC/film.cascade" -o "$T/out/$name" -t "$TRACKER_ADDR" \
        --cache "$cache" >"$T/again.out" 2>"$T/again.err"
    rc=$?
    got=$(fetched_bytes "$T/again.err")
    if [ $rc -eq 0 ] && cmp -s "$T/out/$name" "$SRC/film" && [ ! -e "$T/out/$name.part" ]; then
        ok "$name: the rerun completes and renames"
    else
        fail "$name: rerun exit $rc: $(ls "$T/out"): $(cat "$T/again.err")"
    fi
    [ -n "$got" ] && [ "$got" -lt "$SIZE" ] && ok "$name: resumed (fetched $got of $SIZE bytes)" ||
        fail "$name: fetched '$got' bytes again: $(cat "$T/again.err")"
done
grep -qE "film2: complete, $SIZE bytes; fetched [0-9.]+ [KM]iB in [0-9.]+ s \([0-9.]+ MiB/s\)" \
    "$T/again.err" && ok "the summary is in binary units" || fail "summary: $(cat "$T/again.err")"

# ---- seeding the result verifies nothing again ----
"$CASCADE" seed "$SRC/film.cascade" --data "$T/out/film" -t "$TRACKER_ADDR" -l 127.0.0.1:0 \
    --cache "$T/gc" >"$T/reseed.out" 2>"$T/reseed.err" &
RESEED=$!
OUR_PIDS+=($RESEED)
wait_for_line "$T/reseed.out" 'serving' 30 || fail "reseed did not start: $(cat "$T/reseed.err")"
grep -q "film: 49 of 49 blocks held" "$T/reseed.err" && ! grep -qi "verif" "$T/reseed.err" &&
    ok "seeding the renamed file trusts its record (nothing verified again)" ||
    fail "reseed: $(cat "$T/reseed.err")"
stop_pid "$RESEED"

# ---- an existing NAME is completed in place ----
head -c $((1024 * 1024)) "$SRC/film" >"$T/out/inplace"
timeout 120 "$CASCADE" get "$SRC/film.cascade" -o "$T/out/inplace" -t "$TRACKER_ADDR" \
    --cache "$T/gc3" -q 2>"$T/inplace.err" && cmp -s "$T/out/inplace" "$SRC/film" &&
    [ ! -e "$T/out/inplace.part" ] && ok "an existing NAME is completed in place" ||
    fail "in place: $(ls "$T/out"): $(cat "$T/inplace.err")"

# ---- the progress line on a terminal ----
if ! command -v script >/dev/null; then
    echo "SKIP: script(1) missing (package util-linux): progress on a terminal not checked"
else
    small=$T/src/small
    make_data "$small" $((700 * 1024))
    "$CASCADE" create "$small" -b 64K -q >/dev/null || die "create small"
    "$BAD_PEER" --listen 127.0.0.1:0 --cascade "$small.cascade" --data "$small" --mode slow \
        --tracker "$TRACKER_ADDR" >"$T/slow2.out" 2>"$T/slow2.err" &
    OUR_PIDS+=($!)
    wait_for_line "$T/slow2.out" 'listening on' 10 || die "slow peer 2: $(cat "$T/slow2.err")"
    script -qec "$(printf '%q ' "$CASCADE" get "$small.cascade" -o "$T/out/small" \
        -t "$TRACKER_ADDR" --cache "$T/gc4")" /dev/null </dev/null >"$T/tty" 2>&1
    rc=$?
    tr '\r' '\n' <"$T/tty" | sed 's/\x1b\[K//g' >"$T/lines"
    if [ $rc -ne 0 ] || ! cmp -s "$T/out/small" "$small"; then
        fail "get on a terminal: exit $rc: $(tail -5 "$T/lines")"
    elif grep -qaE '^fetching +[0-9]+% \[[#.]+\]  [0-9.]+ (B|KiB) / 700\.0 KiB  [0-9.]+ (B|KiB)/s  ETA [0-9]+:[0-9]{2}  1 peer$' "$T/lines" &&
         grep -qaE '^fetching 100% \[#+\]  700\.0 KiB / 700\.0 KiB  .*  in [0-9]+:[0-9]{2}  [0-9]+ peers?$' "$T/lines"; then
        ok "get on a terminal: '$(grep -a '^fetching .*ETA' "$T/lines" | tail -1)'"
    else
        fail "get on a terminal: progress lines: $(grep -a '^fetching' "$T/lines" | tail -3)"
    fi
fi

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
