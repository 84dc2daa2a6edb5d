#!/usr/bin/env bash
# cascade-tracker as a real process on 127.0.0.1: subscribe/list, allow-list
# from a .cascade file, a folder (a FIFO in it skipped, never waited on) or a
# hash list, read again on SIGHUP, vouched-for peers, garbage answered with
# status 1 without a crash, SIGTERM exits 0; and under attack: floods of
# subscribes from one address leave a real seeder in every answer, and 1,100
# silent connections under `ulimit -n 256` neither starve honest requests,
# nor spin the loop, nor flood the log.
#
# TRACKER_FLOOD_HASHES (default 100000) and TRACKER_FLOOD_SECONDS (default
# 10) scale the attacks down for a quick run.
set -uo pipefail
export CASCADE_BUILD=${CASCADE_BUILD:?CASCADE_BUILD not set}
. "$CASCADE_SRC/tests/swarm_lib.sh"
command -v python3 >/dev/null || skip "python3 missing"
FLOOD="${CASCADE_HELPERS:-$CASCADE_BUILD/tests}/tracker_flood"
[ -x "$FLOOD" ] || skip "$FLOOD is not built"
client="python3 $CASCADE_SRC/tests/lib/tracker_client.py"
flood_hashes=${TRACKER_FLOOD_HASHES:-100000}
flood_seconds=${TRACKER_FLOOD_SECONDS:-10}

# start_tracker_with NAME ULIMIT|- -- ARGS...: sets tport, tpid; logs in $T/NAME.err
start_tracker_with() {
    local name=$1 limit=$2; shift 3
    if [ "$limit" = - ]; then
        "$TRACKER" --listen 127.0.0.1:0 "$@" >"$T/$name.out" 2>"$T/$name.err" &
    else
        bash -c 'ulimit -n "$0" && exec "$@"' "$limit" "$TRACKER" --listen 127.0.0.1:0 "$@" \
            >"$T/$name.out" 2>"$T/$name.err" &
    fi
    tpid=$!
    OUR_PIDS+=("$tpid")
    wait_for_line "$T/$name.out" 'listening on' 10 ||
        die "tracker $name did not start: $(cat "$T/$name.err")"
    tport=$(addr_in "$T/$name.out"); tport=${tport##*:}
}

stop_tracker() {
    local rc=0
    stop_pid "$tpid" || rc=$?
    [ "$rc" -eq 0 ] || fail "tracker exit status $rc after SIGTERM"
}

# probe_ok FILE: a tracker_flood probe summary where every probe found the seeder.
probe_ok() {
    awk '/^probes/ { ok = $2 > 0 && $2 == $4 && $2 == $6 && $8 == 0 } END { exit !ok }' "$1"
}

spec=$CASCADE_VECTORS/spec1000.bin.cascade
hash=$(sha256sum "$spec" | cut -d' ' -f1)
other=$(sha256sum "$CASCADE_VECTORS/even4096.bin.cascade" | cut -d' ' -f1)

echo "== subscribe and list"
start_tracker_with basic - -- --allow "$spec" --good 127.0.0.3
out=$($client "$tport" 2 "$hash" 127.0.0.1 7001)
[ "$out" = "peers " ] || fail "first subscribe: $out"
out=$($client "$tport" 2 "$hash" 0.0.0.0 7002 --src 127.0.0.2)
[ "$out" = "peers 127.0.0.1:7001:0" ] || fail "second subscribe: $out"
$client "$tport" 2 "$hash" 127.0.0.3 7003 --src 127.0.0.3 >/dev/null
out=$($client "$tport" 1 "$hash" 0.0.0.0 0)
[ "$out" = "peers 127.0.0.1:7001:0 127.0.0.2:7002:0 127.0.0.3:7003:1" ] || fail "list: $out"

echo "== allow-list refuses other hashes"
out=$($client "$tport" 1 "$other" 127.0.0.1 7001)
case "$out" in "error 1 "*"not tracked"*) ;; *) fail "unlisted hash: $out" ;; esac

echo "== a silent client does not block the others"
exec 7<>/dev/tcp/127.0.0.1/"$tport"
out=$(timeout 10 $client "$tport" 1 "$hash" 0.0.0.0 0)
[ -n "$out" ] || fail "request behind a silent client got no answer"
exec 7>&-

echo "== garbage is answered with status 1, and the tracker lives on"
for raw in "$(printf 'ff%.0s' $(seq 54))" \
           "43415343000000020000000100000026$(printf '00%.0s' $(seq 38))" \
           "43415343000000010000000900000026$(printf '00%.0s' $(seq 38))" \
           "43415343000000010000000100000025$(printf '00%.0s' $(seq 38))"; do
    out=$($client "$tport" 0 x x 0 --raw "$raw")
    case "$out" in "error 1 "*) ;; *) fail "garbage answered '$out'" ;; esac
done
head -c 100000 /dev/urandom > "$T/junk"
timeout 5 bash -c "cat '$T/junk' > /dev/tcp/127.0.0.1/$tport" 2>/dev/null || true
kill -0 "$tpid" || die "tracker died on garbage"
out=$($client "$tport" 1 "$hash" 0.0.0.0 0)
case "$out" in "peers "*) ;; *) fail "after garbage: $out" ;; esac

echo "== a subscription for somebody else's address is refused"
out=$($client "$tport" 2 "$hash" 8.8.8.8 53)
case "$out" in "error 1 "*"source"*) ;; *) fail "foreign announce: $out" ;; esac

echo "== SIGTERM stops it cleanly"
stop_tracker

echo "== bad usage"
rc=0; "$TRACKER" --expiry nope >/dev/null 2>&1 || rc=$?
[ "$rc" -eq 2 ] || fail "bad --expiry gave $rc"
rc=0; "$TRACKER" --max-ports-per-source 0 >/dev/null 2>&1 || rc=$?
[ "$rc" -eq 2 ] || fail "--max-ports-per-source 0 gave $rc"
"$TRACKER" --help | grep -q -- "--max-connections-per-source" || fail "--help lacks the caps"
rc=0; "$TRACKER" --allow "$CASCADE_VECTORS/bad-magic.cascade" --listen 127.0.0.1:0 \
    >/dev/null 2>"$T/e" || rc=$?
[ "$rc" -eq 2 ] || fail "bad --allow file gave $rc"
mkdir "$T/empty"
rc=0; timeout 10 "$TRACKER" --allow "$T/empty" --listen 127.0.0.1:0 >/dev/null 2>&1 || rc=$?
[ "$rc" -eq 2 ] || fail "--allow of an empty folder gave $rc (must not track everything)"

echo "== --allow of a hash list (comments, blank lines)"
printf '# allowed\n\n%s  # spec\n' "$other" > "$T/hashes"
start_tracker_with list - -- --allow "$T/hashes"
out=$($client "$tport" 1 "$other" 0.0.0.0 0)
[ "$out" = "peers " ] || fail "listed hash: $out"
out=$($client "$tport" 1 "$hash" 0.0.0.0 0)
case "$out" in "error 1 "*"not tracked"*) ;; *) fail "hash not in list: $out" ;; esac
stop_tracker
printf 'nothex\n' > "$T/badhashes"
rc=0; timeout 10 "$TRACKER" --allow "$T/badhashes" --listen 127.0.0.1:0 >/dev/null 2>"$T/e" || rc=$?
[ "$rc" -eq 2 ] && grep -q "line 1" "$T/e" || fail "bad hash list gave $rc: $(cat "$T/e")"

echo "== a FIFO in an --allow folder is skipped, never waited on"
mkdir "$T/allow"
cp "$spec" "$T/allow/spec.cascade"
mkfifo "$T/allow/x.cascade"
start_tracker_with fifo - -- --allow "$T/allow"
grep -q "x.cascade: not a regular file: skipped" "$T/fifo.err" ||
    fail "no warning about the FIFO: $(cat "$T/fifo.err")"
out=$($client "$tport" 1 "$hash" 0.0.0.0 0)
[ "$out" = "peers " ] || fail "folder with a FIFO: $out"
rc=0; timeout 10 "$TRACKER" --allow "$T/allow/x.cascade" --listen 127.0.0.1:0 \
    >/dev/null 2>"$T/e" || rc=$?
[ "$rc" -eq 2 ] && grep -q "not a regular file" "$T/e" ||
    fail "--allow of a FIFO gave $rc: $(cat "$T/e")"

echo "== SIGHUP reads --allow again; a reload that fails keeps the old list"
out=$($client "$tport" 1 "$other" 0.0.0.0 0)
case "$out" in "error 1 "*"not tracked"*) ;; *) fail "before SIGHUP: $out" ;; esac
# hup_then COPY-FROM NAME PATTERN: copy a file into the folder, SIGHUP, wait
# for PATTERN in the log; the other hash must then be tracked.
hup_then() {
    cp "$1" "$T/allow/$2"
    kill -HUP "$tpid"
    wait_for_line "$T/fifo.err" "$3" 10 || fail "after SIGHUP, no '$3': $(cat "$T/fifo.err")"
    out=$($client "$tport" 1 "$other" 0.0.0.0 0)
    [ "$out" = "peers " ] || fail "after SIGHUP ($2): $out"
}
hup_then "$CASCADE_VECTORS/even4096.bin.cascade" even.cascade "read again: tracking 2 files"
hup_then "$CASCADE_VECTORS/bad-magic.cascade" bad.cascade \
    "reading --allow failed: .*bad.cascade.*keeping"
stop_tracker

# flood_and_probe NAME FLOOD-ARGS...: one attack from 127.0.0.3 while a
# probe lists $hash again and again; every answer must hold the seeder.
flood_and_probe() {
    local name=$1; shift
    "$FLOOD" --tracker "127.0.0.1:$tport" --pause 20 probe "$hash" 127.0.0.2:7002 \
        >"$T/$name.probe" 2>"$T/$name.probe.err" &
    local probe=$!
    timeout 300 "$FLOOD" --tracker "127.0.0.1:$tport" --src 127.0.0.3 "$@" >"$T/$name.flood" ||
        fail "$name: the flood did not finish"
    kill -TERM "$probe"; wait "$probe"
    echo "   $name: $(cat "$T/$name.flood"); $(cat "$T/$name.probe")"
    grep -q "answered" "$T/$name.flood" || fail "$name: no flood summary"
    probe_ok "$T/$name.probe" ||
        fail "$name: the seeder was missing: $(head -3 "$T/$name.probe.err")"
}

echo "== floods from one address leave a real seeder in every answer"
start_tracker_with flood - --
$client "$tport" 2 "$hash" 0.0.0.0 7002 --src 127.0.0.2 >/dev/null
flood_and_probe random random "$flood_hashes"
flood_and_probe ports ports "$hash" 5000
stop_tracker
start_tracker_with flood-allow - -- --allow "$spec"
$client "$tport" 2 "$hash" 0.0.0.0 7002 --src 127.0.0.2 >/dev/null
flood_and_probe ports-allowed ports "$hash" 5000
stop_tracker

echo "== 1,100 silent connections under ulimit -n 256"
start_tracker_with silent 256 --
$client "$tport" 2 "$hash" 0.0.0.0 7002 --src 127.0.0.2 >/dev/null
attackers=()
"$FLOOD" --tracker "127.0.0.1:$tport" --src 127.0.0.3 silent 600 "$flood_seconds" \
    >"$T/silent.3" & attackers+=($!)
for i in $(seq 10 19); do
    "$FLOOD" --tracker "127.0.0.1:$tport" --src "127.0.0.$i" silent 50 "$flood_seconds" \
        >"$T/silent.$i" & attackers+=($!)
done
sleep 1
"$FLOOD" --tracker "127.0.0.1:$tport" --count 20 --pause 200 probe "$hash" 127.0.0.2:7002 \
    >"$T/silent.probe" 2>"$T/silent.probe.err"
wait "${attackers[@]}"
echo "   attacker 127.0.0.3: $(cat "$T/silent.3"); $(cat "$T/silent.probe")"
probe_ok "$T/silent.probe" && grep -q "^probes 20 " "$T/silent.probe" ||
    fail "honest requests failed under attack: $(head -3 "$T/silent.probe.err")"
stop_tracker
lines=$(wc -l <"$T/silent.err")
echo "   tracker log: $lines lines; $(grep -o 'stopped: .*' "$T/silent.err")"
[ "$lines" -lt 100 ] || fail "the tracker logged $lines lines under attack"
grep -q "at most 224 connections" "$T/silent.err" || fail "the connection cap did not fit ulimit -n 256"
# No busy loop: the loop wakes for work (about a connection each), not by itself.
awk '/stopped:/ { for (i = 1; i <= NF; i++) { if ($(i+1) == "connections,") c = $i;
                                               if ($(i+1) == "loop") t = $i } }
     END { exit !(c > 1000 && t <= c + 1000) }' "$T/silent.err" ||
    fail "loop turns out of proportion: $(grep 'stopped:' "$T/silent.err")"

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
