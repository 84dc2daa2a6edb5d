#!/usr/bin/env bash
# Integration test for the live status of running peers (`cascade status`
# and the control sockets of cascadefs and `cascade seed`), with a real
# tracker, seeders and a real mount on loopback:
#   - nothing running: a clear line, exit 0; bad usage: exit 2;
#   - with a seeder and a mount running, `cascade status` (no argument)
#     lists both; --json parses (python3) and names each by pid;
#   - during a transfer (a slow reader through the mount, no read-ahead)
#     both show nonzero rates and each other's address; afterwards the
#     rates come back to 0 (the time it took is printed, not asserted: the
#     unit test test_node_status checks the window exactly);
#   - `cascade status --json MNT` and `MNT/FILE` parse, and their values
#     match `cascade info --json` and the mount's xattrs; the seeder's too;
#     the mount's cache figures show its -o cache_max;
#   - the control socket: mode 0600 in $XDG_RUNTIME_DIR/cascade, named by
#     the mount's root xattr; a socket left by a killed seeder is removed;
#   - a peer that is gone (its seeder stopped, a read wants blocks from it)
#     stops counting as known, in the status and the xattrs alike, also
#     once the tracker lists it again;
#   - --watch redraws (in place on a terminal) until Ctrl-C, exit 0;
#   - a mount in the background (a relative mount point) says where it is
#     mounted, and removes its socket when unmounted.
set -u
. "${CASCADE_SRC:?CASCADE_SRC not set}/tests/mount_lib.sh"
command -v python3 >/dev/null || skip "python3 missing (bash contrib/deps.sh)"

# Our own runtime and cache folders: only what this test starts is listed.
export XDG_RUNTIME_DIR=$T/run XDG_CACHE_HOME=$T/xdg-cache
mkdir -m 700 "$XDG_RUNTIME_DIR"

# py FILE.json EXPR...: run python with j = the parsed JSON of FILE (an
# assertion error prints its message and returns 1).
py() {
    local file=$1; shift
    python3 - "$file" "$@" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
exec(sys.argv[2], {"j": j, "args": sys.argv[3:], "json": json})
EOF
}

# status_json FILE [ARGS]: `cascade status --json ARGS` into FILE.
status_json() {
    local file=$1; shift
    "$CASCADE" status --json "$@" >"$file" 2>"$file.err"
}

# ---- nothing running; usage ----
"$CASCADE" status >"$T/out" 2>&1
rc=$?
[ $rc -eq 0 ] && grep -q "no cascadefs mount or cascade seed of yours is running" "$T/out" &&
    ok "nothing running: said so, exit 0" || fail "nothing running: exit $rc: $(cat "$T/out")"
status_json "$T/none.json" && py "$T/none.json" 'assert j == {"running": []}, j' &&
    ok "nothing running: --json is {\"running\": []}" || fail "nothing running, --json: $(cat "$T/none.json")"
for args in "--watch 0" "--watch=abc" "--watch 4000" "--json a b" "--bogus"; do
    # shellcheck disable=SC2086
    "$CASCADE" status $args >/dev/null 2>"$T/err"
    rc=$?
    [ $rc -eq 2 ] || fail "status $args: exit $rc, want 2: $(cat "$T/err")"
done
ok "bad usage: exit 2"

# ---- a seeder and a mount ----
SRC=$T/src
mkdir -p "$SRC"
SIZE=$((12 * 1024 * 1024 + 777))
make_data "$SRC/film" $SIZE
"$CASCADE" create "$SRC/film" -b 64K -q >/dev/null || die "create film"
make_data "$SRC/notes" $((2 * 1024 * 1024))
"$CASCADE" create "$SRC/notes" -b 64K -q >/dev/null || die "create notes"
start_tracker
start_seeder seeder "$T/seedcache" "$SRC/film.cascade"
S_PID=$SEEDER_PID
S_ADDR=$(sed -n 's/^serving .* on \([0-9.]*:[0-9]*\)$/\1/p' "$T/seeder.out")
M=$T/mnt
mount_fs "$T/m.log" "$M" \
    -o "tracker=$TRACKER_ADDR,listen=127.0.0.1:0,cache=$T/mcache,readahead=0,cache_max=64M" \
    "$SRC/film.cascade" || die "mount"
M_PID=$MOUNT_PID
M_REAL=$(realpath "$M")

status_json "$T/both.json" || fail "status --json: $(cat "$T/both.json.err")"
if py "$T/both.json" '
r = {e["pid"]: e for e in j["running"]}
s, m = int(args[0]), int(args[1])
assert set(r) == {s, m}, "pids %s" % list(r)
assert r[s]["program"] == "cascade seed" and r[s]["mountpoint"] is None, r[s]
assert r[m]["program"] == "cascadefs" and r[m]["mountpoint"] == args[2], r[m]
assert r[s]["server"] == args[3], r[s]["server"]
for e in r.values():
    assert e["version"] == 1 and e["live"] is True and e["socket"].endswith("/%d.sock" % e["pid"])
    assert [f["name"] for f in e["files"]] == ["film"], e["files"]
assert r[m]["cache"]["max"] == 64 << 20 and r[m]["cache"]["evicted"] == 0, r[m]["cache"]
assert r[s]["cache"]["max"] is None, r[s]["cache"]   # it seeds its own data file, no limit
' "$S_PID" "$M_PID" "$M_REAL" "$S_ADDR"; then
    ok "status --json lists the seeder and the mount"
else
    fail "status --json of both: $(cat "$T/both.json")"
fi
"$CASCADE" status >"$T/both.txt" 2>&1
grep -q "^cascade seed (pid $S_PID), serving on $S_ADDR" "$T/both.txt" &&
    grep -q "^cascadefs (pid $M_PID) on $M_REAL, serving on 127.0.0.1:" "$T/both.txt" &&
    grep -q "^  tracker $TRACKER_ADDR  answered [0-9]* s ago" "$T/both.txt" &&
    [ "$(grep -c "^  cache .* of 64.0 MiB, 0 B evicted$" "$T/both.txt")" = 1 ] &&
    ok "status lists the seeder and the mount (the mount's cache under its limit)" ||
    fail "status: $(cat "$T/both.txt")"

# ---- the control socket ----
sock=$(xattr "$M" control)
[ "$sock" = "$XDG_RUNTIME_DIR/cascade/$M_PID.sock" ] && [ -S "$sock" ] &&
    [ "$(stat -c %a "$sock")" = 600 ] && [ "$(stat -c %a "$XDG_RUNTIME_DIR/cascade")" = 700 ] &&
    ok "control socket $sock, mode 600" ||
    fail "control socket '$sock' ($(stat -c %a "$sock" 2>&1))"

# ---- during a transfer: rates and each other's addresses ----
python3 - "$M/film" >"$T/reader.out" 2>&1 <<'EOF' &
import sys, time
with open(sys.argv[1], "rb") as f:
    while f.read(65536):
        time.sleep(0.04)
EOF
READER=$!
OUR_PIDS+=($READER)
seen=no
while kill -0 "$READER" 2>/dev/null; do
    status_json "$T/live.json"
    if py "$T/live.json" '
r = {e["pid"]: e for e in j["running"]}
s, m = r[int(args[0])], r[int(args[1])]
assert m["files"][0]["fetch_rate"] > 0 and s["files"][0]["serve_rate"] > 0
down = [p for p in m["peers"] if p["direction"] == "download"]
up = [p for p in s["peers"] if p["direction"] == "upload"]
assert [p["address"] for p in down] == [args[2]], m["peers"]
assert down[0]["rate_received"] > 0 and down[0]["bytes_received"] > 0
assert len(up) == 1 and up[0]["rate_sent"] > 0 and up[0]["address"].startswith("127.0.0.1:")
assert m["files"][0]["eta_s"] is None or m["files"][0]["eta_s"] >= 0
' "$S_PID" "$M_PID" "$S_ADDR" 2>/dev/null; then
        seen=yes
        "$CASCADE" status >"$T/live.txt" 2>&1
        break
    fi
    sleep 0.3
done
[ $seen = yes ] && ok "during the transfer: nonzero rates, the peers' addresses" ||
    fail "no nonzero rates seen during the transfer: $(cat "$T/live.json")"
[ $seen = no ] || {
    grep -qE "^  peer $S_ADDR  download  .* at .*/s$" "$T/live.txt" &&
        grep -qE "^  peer 127\.0\.0\.1:[0-9]+  upload  .* at .*/s$" "$T/live.txt" &&
        grep -qE "^  fetch [0-9.]+ (B|KiB|MiB)/s  serve " "$T/live.txt" &&
        ok "status shows the peers and rates" || fail "status during the transfer: $(cat "$T/live.txt")"
}
wait "$READER" || fail "reader: $(cat "$T/reader.out")"
cmp -s "$M/film" "$SRC/film" || fail "film through the mount differs"
start=$(date +%s)
zero=no
for i in $(seq 400); do   # a guard of 40 s
    status_json "$T/after.json"
    if py "$T/after.json" '
for e in j["running"]:
    for f in e["files"]:
        assert f["fetch_rate"] == 0 and f["serve_rate"] == 0
    for p in e["peers"]:
        assert p["rate_received"] == 0 and p["rate_sent"] == 0
' 2>/dev/null; then zero=yes; break; fi
    sleep 0.1
done
[ $zero = yes ] && ok "rates back at 0 $(($(date +%s) - start)) s after the transfer" ||
    fail "rates not back at 0 after 40 s: $(cat "$T/after.json")"

# ---- --json MNT and MNT/FILE against info and the xattrs ----
"$CASCADE" info --json "$SRC/film.cascade" >"$T/info.json" || fail "info --json"
compare_with_xattrs() {   # compare_with_xattrs JSON FILE_IN_MOUNT
    local k args=()
    for k in blocks_held peers_known peers_connected bytes_fetched bytes_served cascade_hash \
             size block_size blocks_total; do
        args+=("$k=$(xattr "$2" "$k")")
    done
    py "$1" '
info = json.load(open(args[0]))
f = j["files"]
assert len(f) == 1, f
f = f[0]
for kv in args[1:]:
    k, v = kv.split("=", 1)
    assert str(f[k]) == v, "%s: %r, xattr %r" % (k, f[k], v)
assert f["name"] == info["name"] and f["size"] == info["size"]
assert f["block_size"] == info["block_size"] and f["blocks_total"] == info["block_count"]
assert f["cascade_hash"] == info["cascade_hash"]
for k in ("fetch_rate", "serve_rate", "peers_known", "bytes_fetched"):
    assert type(f[k]) is int, k
' "$T/info.json" "${args[@]}"
}
for what in "$M" "$M/film"; do
    good=no
    for try in 1 2 3; do   # a peer may come or go between the two reads
        status_json "$T/mnt.json" "$what" || break
        if compare_with_xattrs "$T/mnt.json" "$M/film" >"$T/cmp.out" 2>&1; then good=yes; break; fi
    done
    [ $good = yes ] && ok "status --json $what matches info and the xattrs" ||
        fail "status --json $what: $(cat "$T/cmp.out") $(cat "$T/mnt.json" "$T/mnt.json.err")"
done
py "$T/mnt.json" 'assert j["pid"] == int(args[0]) and j["live"] and j["mountpoint"] == args[1]
assert j["trackers"][0]["address"] == args[2] and j["trackers"][0]["failures"] == 0' \
    "$M_PID" "$M_REAL" "$TRACKER_ADDR" || fail "status --json MNT/FILE: $(cat "$T/mnt.json")"
status_json "$T/all.json"
py "$T/all.json" '
s = [e for e in j["running"] if e["pid"] == int(args[0])][0]
info = json.load(open(args[1]))
f = s["files"][0]
assert f["blocks_held"] == f["blocks_total"] == info["block_count"] and f["size"] == info["size"]
assert f["bytes_served"] >= int(args[2]), (f["bytes_served"], args[2])   # doubles too
' "$S_PID" "$T/info.json" "$(xattr "$M/film" bytes_fetched)" &&
    ok "the seeder's figures match (it served what the mount fetched)" ||
    fail "seeder's status: $(cat "$T/all.json")"
"$CASCADE" status "$M" >"$T/mnt.txt" 2>&1
grep -q "^cascadefs (pid $M_PID) on $M_REAL" "$T/mnt.txt" &&
    grep -q "^film  $((SIZE / 65536 + 1))/$((SIZE / 65536 + 1)) blocks (100.0%)  peers" "$T/mnt.txt" &&
    grep -q "^  \[#*\]$" "$T/mnt.txt" && grep -q "^  fetch 0 B/s  serve 0 B/s$" "$T/mnt.txt" &&
    ok "status MNT: the xattr lines and the live ones" || fail "status MNT: $(cat "$T/mnt.txt")"

# ---- a killed seeder's socket is removed ----
mkdir -p "$T/s2"
cp "$SRC/notes" "$SRC/notes.cascade" "$T/s2/"
start_seeder seeder2 "$T/s2cache" "$T/s2/notes.cascade"
S2_SOCK=$XDG_RUNTIME_DIR/cascade/$SEEDER_PID.sock
for i in $(seq 50); do [ -S "$S2_SOCK" ] && break; sleep 0.1; done
kill -KILL "$SEEDER_PID"
wait "$SEEDER_PID" 2>/dev/null
[ -S "$S2_SOCK" ] || fail "no socket left by the killed seeder (nothing to clean)"
"$CASCADE" status >"$T/out" 2>&1
rc=$?
[ $rc -eq 0 ] && [ ! -e "$S2_SOCK" ] && ! grep -q "pid $SEEDER_PID" "$T/out" &&
    grep -q "pid $S_PID" "$T/out" && ok "a killed seeder's socket is removed, the rest listed" ||
    fail "stale socket: exit $rc, $(ls "$XDG_RUNTIME_DIR/cascade"): $(cat "$T/out")"

# ---- --watch ----
timeout --preserve-status -s INT 4 "$CASCADE" status --watch 1 >"$T/watch.out" 2>&1
rc=$?
passes=$(grep -c "^cascade seed (pid $S_PID)" "$T/watch.out")
[ $rc -eq 0 ] && [ "$passes" -ge 2 ] && ! grep -q $'\033' "$T/watch.out" &&
    ok "--watch: $passes passes, exit 0 on SIGINT (no escapes when not a terminal)" ||
    fail "--watch: exit $rc, $passes passes: $(head -20 "$T/watch.out")"
timeout --preserve-status -s INT 3 "$CASCADE" status --json --watch=1 "$M" >"$T/watch.json" 2>&1
rc=$?
python3 -c 'import json,sys; l=open(sys.argv[1]).read().splitlines(); assert len(l) >= 2
for x in l: assert json.loads(x)["pid"] == int(sys.argv[2])' "$T/watch.json" "$M_PID" &&
    [ $rc -eq 0 ] && ok "--json --watch: a JSON line per pass" ||
    fail "--json --watch: exit $rc: $(head -c 300 "$T/watch.json")"
if command -v script >/dev/null; then
    script -qec "timeout --preserve-status -s INT 3 $(printf '%q' "$CASCADE") status --watch 1" \
        /dev/null </dev/null >"$T/tty.out" 2>&1
    rc=$?
    clears=$(grep -o $'\033\\[H\033\\[2J' "$T/tty.out" | wc -l)
    [ $rc -eq 0 ] && [ "$clears" -ge 2 ] && grep -q "every 1 s, .* (Ctrl-C to stop)" "$T/tty.out" &&
        ok "--watch on a terminal redraws in place ($clears times)" ||
        fail "--watch on a terminal: exit $rc, $clears clears: $(head -c 300 "$T/tty.out")"
else
    echo "SKIP: script(1) missing: --watch on a terminal not checked"
fi

# ---- a peer that is gone stops counting as known ----
[ "$(xattr "$M/film" peers_known)" = 1 ] || fail "before: peers_known $(xattr "$M/film" peers_known)"
M2=$T/mnt2
mount_fs "$T/m2.log" "$M2" -d -o "tracker=$TRACKER_ADDR,listen=127.0.0.1:0,cache=$T/m2cache,readahead=0,timeout=5" \
    "$SRC/film.cascade" || die "mount 2"
M2_PID=$MOUNT_PID
dd if="$M2/film" of=/dev/null bs=64K count=1 status=none 2>"$T/dd.err" ||
    fail "first block through mount 2: $(cat "$T/dd.err"): $(tail -5 "$T/m2.log")"
[ "$(xattr "$M2/film" peers_known)" -ge 1 ] || fail "mount 2 knows no peer"
stop_pid "$S_PID"
# Mount 1 holds the whole file and serves it: unmount it, so no peer is left.
unmount_fs "$M" "$M_PID"
# A reader that keeps wanting a block nobody can give (each read ends
# with EIO after the mount's 5 s timeout, then asks again).
while [ ! -e "$T/stop-reading" ]; do
    dd if="$M2/film" of=/dev/null bs=64K skip=100 count=1 status=none 2>/dev/null
done &
READING=$!
OUR_PIDS+=($READING)
gone=no
for i in $(seq 300); do   # a guard of 30 s (3 failed connects take about 4 s)
    status_json "$T/gone.json" "$M2"
    if py "$T/gone.json" 'f = j["files"][0]; assert f["peers_known"] == 0 and f["peers_connected"] == 0' \
        2>/dev/null && [ "$(xattr "$M2/film" peers_known)" = 0 ]; then gone=yes; break; fi
    sleep 0.1
done
[ $gone = yes ] || fail "gone seeder still known: $(cat "$T/gone.json"), xattr $(xattr "$M2/film" peers_known)"
# Sooner than the node forgets it (six failures in a row, its debug log
# says so), and it stays so when the tracker lists it again after that.
if [ $gone = yes ] && grep -q "forgotten after" "$T/m2.log"; then
    fail "peers_known went to 0 only when the peers were forgotten: $(grep "forgotten after" "$T/m2.log")"
fi
for i in $(seq 16); do
    [ $gone = yes ] || break
    sleep 0.5
    status_json "$T/gone.json" "$M2"
    py "$T/gone.json" 'assert j["files"][0]["peers_known"] == 0' 2>/dev/null &&
        [ "$(xattr "$M2/film" peers_known)" = 0 ] || gone=no
done
[ $gone = yes ] && ok "a seeder that is gone no longer counts as known (status and xattr), and stays so" ||
    fail "gone seeder known again: $(cat "$T/gone.json"), xattr $(xattr "$M2/film" peers_known)"
touch "$T/stop-reading"
wait "$READING"   # its last read ends within the mount's timeout
unmount_fs "$M2" "$M2_PID"

# ---- a mount in the background (a daemon) with a relative mount point ----
mkdir -p "$T/bg"
(cd "$T" && "$CASCADEFS" -o "tracker=$TRACKER_ADDR,listen=127.0.0.1:0,cache=$T/bgcache" \
    "$SRC/film.cascade" bg 2>"$T/bg.err") || fail "daemon mount: $(cat "$T/bg.err")"
OUR_MOUNTS+=("$T/bg")
status_json "$T/bg.json" "$T/bg"
BG_PID=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$T/bg.json")
if [ -n "$BG_PID" ]; then
    OUR_PIDS+=($BG_PID)
    py "$T/bg.json" 'assert j["mountpoint"] == args[0] and j["program"] == "cascadefs", j' \
        "$(realpath "$T/bg")" && ok "a daemon mount answers, with its absolute mount point" ||
        fail "daemon mount's status: $(cat "$T/bg.json")"
    bg_sock=$XDG_RUNTIME_DIR/cascade/$BG_PID.sock
    fusermount3 -u "$T/bg" || fail "fusermount3 -u $T/bg"
    for i in $(seq 100); do kill -0 "$BG_PID" 2>/dev/null || break; sleep 0.1; done
    ! kill -0 "$BG_PID" 2>/dev/null && [ ! -e "$bg_sock" ] &&
        ok "unmounted: the daemon exits and removes its socket" ||
        fail "after unmount: pid $BG_PID $(kill -0 "$BG_PID" 2>/dev/null && echo runs), $(ls "$XDG_RUNTIME_DIR/cascade")"
else
    fail "daemon mount: no pid in $(cat "$T/bg.json" "$T/bg.json.err")"
fi

[ "$failures" = 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "all passed"
