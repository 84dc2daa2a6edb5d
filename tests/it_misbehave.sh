#!/usr/bin/env bash
# Integration test: `cascade get` against misbehaving peers (tests/helpers/
# bad_peer in every mode: wrong-hash, short, long, unknown-status, stall,
# reset, not-present) registered with a real cascade-tracker.
#   - all of them plus one good seeder: get completes, the output is
#     byte-identical, and the peers that sent bad data are dropped;
#   - each bad peer alone: get exits 1 with a clear message within its
#     --timeout, nothing unverified is left marked as held (a second get
#     from a good seeder then completes the same output file);
#   - all bad peers together and no good one: exit 1, bounded.
set -u

# shellcheck source=tests/swarm_lib.sh
. "${CASCADE_SRC:?CASCADE_SRC not set}/tests/swarm_lib.sh"
[ -x "$BAD_PEER" ] || skip "$BAD_PEER is not built"

MODES=(wrong-hash short long unknown-status stall reset not-present)
# modes that send bad data: the fetcher must drop (ban) these peers
BANNED_MODES=" wrong-hash short long unknown-status "

mkdir -p "$T/src"
head -c $((2 * 1024 * 1024 + 77)) /dev/urandom >"$T/src/f" || die "no random data"
"$CASCADE" create "$T/src/f" -b 1K -q >/dev/null || die "create failed"
CAS="$T/src/f.cascade"

start_tracker

# start_bad MODE: sets BAD_PID, BAD_ADDR.
start_bad() {
    "$BAD_PEER" --listen 127.0.0.1:0 --cascade "$CAS" --data "$T/src/f" --mode "$1" --tracker "$TRACKER_ADDR" \
        >"$T/bad-$1.out" 2>"$T/bad-$1.err" &
    BAD_PID=$!
    OUR_PIDS+=($BAD_PID)
    wait_for_line "$T/bad-$1.out" 'listening on' 10 || die "bad_peer $1 did not start: $(cat "$T/bad-$1.err")"
    BAD_ADDR=$(addr_in "$T/bad-$1.out")
}

# ---- each bad peer alone: a clean failure, nothing bad kept ----
declare -A BAD_PIDS
for mode in "${MODES[@]}"; do
    start_bad "$mode"
    start=$(date +%s)
    timeout 60 "$CASCADE" get "$CAS" -o "$T/alone-$mode" -t "$TRACKER_ADDR" --cache "$T/c-$mode" -v \
        --timeout 6 >/dev/null 2>"$T/get-$mode.err"
    rc=$?
    took=$(($(date +%s) - start))
    [ $rc -eq 1 ] && ok "$mode alone: exit 1" || fail "$mode alone: exit $rc: $(tail -3 "$T/get-$mode.err")"
    grep -q "no peer could provide block" "$T/get-$mode.err" && ok "$mode alone: clear message" ||
        fail "$mode alone: message: $(tail -3 "$T/get-$mode.err")"
    [ "$took" -le 30 ] || fail "$mode alone: took ${took}s with --timeout 6"
    if [[ "$BANNED_MODES" == *" $mode "* ]]; then
        grep -q "peer $BAD_ADDR dropped" "$T/get-$mode.err" && ok "$mode alone: peer dropped" ||
            fail "$mode alone: peer not dropped: $(grep -v 'debug' "$T/get-$mode.err" | tail -3)"
    fi
    grep -q "fetched block" "$T/get-$mode.err" && fail "$mode alone: a block was accepted"
    BAD_PIDS[$mode]=$BAD_PID
    # Stop it before the next mode, so each run sees one bad peer only.
    stop_pid "$BAD_PID"
done

# ---- every bad peer at once, no good one: exit 1, bounded ----
for mode in "${MODES[@]}"; do start_bad "$mode"; BAD_PIDS[$mode]=$BAD_PID; done
start=$(date +%s)
timeout 90 "$CASCADE" get "$CAS" -o "$T/allbad" -t "$TRACKER_ADDR" --cache "$T/c-allbad" -q --timeout 8 \
    >/dev/null 2>"$T/get-allbad.err"
rc=$?
[ $rc -eq 1 ] && ok "only bad peers: exit 1" || fail "only bad peers: exit $rc: $(cat "$T/get-allbad.err")"
grep -q "no peer could provide block" "$T/get-allbad.err" && ok "only bad peers: clear message" ||
    fail "only bad peers: message: $(cat "$T/get-allbad.err")"
[ $(($(date +%s) - start)) -le 40 ] || fail "only bad peers: not bounded by --timeout"

# ---- every bad peer plus one good seeder: complete and identical ----
mkdir -p "$T/seed"
cp "$CAS" "$T/src/f" "$T/seed/"
"$CASCADE" seed "$T/seed/f.cascade" -t "$TRACKER_ADDR" -l 127.0.0.1:0 --cache "$T/seedcache" \
    >"$T/seed.out" 2>"$T/seed.err" &
OUR_PIDS+=($!)
wait_for_line "$T/seed.out" 'serving' 10 || die "seeder did not start: $(cat "$T/seed.err")"
if timeout 200 "$CASCADE" get "$CAS" -o "$T/mixed" -t "$TRACKER_ADDR" --cache "$T/c-mixed" -v \
    >/dev/null 2>"$T/get-mixed.err"; then
    cmp -s "$T/mixed" "$T/src/f" && ok "bad peers + one seeder: identical output" ||
        fail "bad peers + one seeder: output differs"
else
    fail "bad peers + one seeder: get failed: $(grep -v debug "$T/get-mixed.err" | tail -5)"
fi
dropped=$(grep -c "dropped" "$T/get-mixed.err")
[ "$dropped" -ge 1 ] && ok "bad peers + one seeder: $dropped bad peer(s) dropped" ||
    fail "bad peers + one seeder: no bad peer was dropped"

# ---- the partial outputs of the failed runs complete from the seeder ----
for mode in wrong-hash short; do
    if timeout 120 "$CASCADE" get "$CAS" -o "$T/alone-$mode" -t "$TRACKER_ADDR" --cache "$T/c-$mode" -q \
        2>"$T/again.err"; then
        cmp -s "$T/alone-$mode" "$T/src/f" && ok "after $mode: resumed to an identical file" ||
            fail "after $mode: output differs"
    else
        fail "after $mode: second get failed: $(cat "$T/again.err")"
    fi
done

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
