#!/usr/bin/env bash
# cascade-tracker as a real process on 127.0.0.1: subscribe/list, allow-list
# from a .cascade file, vouched-for peers, garbage answered with status 1
# without a crash, a silent client does not block others, SIGTERM exits 0.
set -euo pipefail
bin=$CASCADE_BUILD/net/cli/cascade-tracker
client="python3 $CASCADE_SRC/tests/lib/tracker_client.py"
command -v python3 >/dev/null || { echo "python3 missing: skipping"; exit 77; }
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]+"${pids[@]}"}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# start_tracker ARGS...: sets tport and tpid
start_tracker() {
    "$bin" --listen 127.0.0.1:0 "$@" > "$work/out" 2> "$work/err" &
    tpid=$!
    pids+=("$tpid")
    for _ in $(seq 100); do grep -q "listening on" "$work/out" && break; sleep 0.1; done
    tport=$(sed -n 's/^listening on 127.0.0.1://p' "$work/out")
    [ -n "$tport" ] || { cat "$work/err"; fail "tracker did not start"; }
}

spec=$CASCADE_VECTORS/spec1000.bin.cascade
hash=$(sha256sum "$spec" | cut -d' ' -f1)
other=$(sha256sum "$CASCADE_VECTORS/even4096.bin.cascade" | cut -d' ' -f1)

echo "== subscribe and list"
start_tracker --allow "$spec" --good 127.0.0.3
out=$($client "$tport" 2 "$hash" 127.0.0.1 7001)
[ "$out" = "peers " ] || fail "first subscribe: $out"
out=$($client "$tport" 2 "$hash" 0.0.0.0 7002 --src 127.0.0.2)
[ "$out" = "peers 127.0.0.1:7001:0" ] || fail "second subscribe: $out"
out=$($client "$tport" 2 "$hash" 127.0.0.3 7003 --src 127.0.0.3)
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
head -c 100000 /dev/urandom > "$work/junk"
timeout 5 bash -c "cat '$work/junk' > /dev/tcp/127.0.0.1/$tport" 2>/dev/null || true
kill -0 "$tpid" || fail "tracker died on garbage"
out=$($client "$tport" 1 "$hash" 0.0.0.0 0)
case "$out" in "peers "*) ;; *) fail "after garbage: $out" ;; esac

echo "== a subscription for somebody else's address is refused"
out=$($client "$tport" 2 "$hash" 8.8.8.8 53)
case "$out" in "error 1 "*"source"*) ;; *) fail "foreign announce: $out" ;; esac

echo "== SIGTERM stops it cleanly"
kill -TERM "$tpid"
rc=0; wait "$tpid" || rc=$?
[ "$rc" -eq 0 ] || fail "exit status $rc after SIGTERM"

echo "== bad usage"
rc=0; "$bin" --expiry nope >/dev/null 2>&1 || rc=$?
[ "$rc" -eq 2 ] || fail "bad --expiry gave $rc"
rc=0; "$bin" --allow "$CASCADE_VECTORS/bad-magic.cascade" --listen 127.0.0.1:0 \
    >/dev/null 2>"$work/e" || rc=$?
[ "$rc" -eq 2 ] || fail "bad --allow file gave $rc"
mkdir "$work/empty"
rc=0; timeout 10 "$bin" --allow "$work/empty" --listen 127.0.0.1:0 >/dev/null 2>&1 || rc=$?
[ "$rc" -eq 2 ] || fail "--allow of an empty folder gave $rc (must not track everything)"

echo "== --allow of a hash list (comments, blank lines)"
printf '# allowed\n\n%s  # spec\n' "$other" > "$work/hashes"
start_tracker --allow "$work/hashes"
out=$($client "$tport" 1 "$other" 0.0.0.0 0)
[ "$out" = "peers " ] || fail "listed hash: $out"
out=$($client "$tport" 1 "$hash" 0.0.0.0 0)
case "$out" in "error 1 "*"not tracked"*) ;; *) fail "hash not in list: $out" ;; esac
kill -TERM "$tpid"; wait "$tpid" || true
printf 'nothex\n' > "$work/badhashes"
rc=0; timeout 10 "$bin" --allow "$work/badhashes" --listen 127.0.0.1:0 >/dev/null 2>"$work/e" || rc=$?
[ "$rc" -eq 2 ] && grep -q "line 1" "$work/e" || fail "bad hash list gave $rc: $(cat "$work/e")"
echo "all tracker checks passed"
