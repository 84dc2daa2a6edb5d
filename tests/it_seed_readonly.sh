#!/usr/bin/env bash
# `cascade seed` of a data file the seeder may read but not write (a root-
# owned 0444 file seeded by `nobody`): the file is verified and served, and
# `cascade get` from it gives the original bytes; a partial read-only file
# is served as far as it goes, with a warning naming what is missing.
set -u
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root to run the seeder as another user"; exit 77; }
command -v runuser >/dev/null && id nobody >/dev/null 2>&1 ||
    { echo "SKIP: needs runuser and the user nobody"; exit 77; }
CASCADE=$CASCADE_BUILD/net/cascade
TRACKER=$CASCADE_BUILD/net/cascade-tracker
T=$(mktemp -d)
chmod 755 "$T"
PIDS=()
cleanup() {
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do wait "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT
failures=0
ok() { echo "ok: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# wait_line FILE PATTERN: up to 10 s for PATTERN to appear in FILE.
wait_line() {
    for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    return 1
}

"$TRACKER" --listen 127.0.0.1:0 > "$T/tracker.out" 2>/dev/null &
PIDS+=($!)
wait_line "$T/tracker.out" "listening on" || { echo "FAIL: tracker did not start"; exit 1; }
tracker=$(sed -n 's/^listening on //p' "$T/tracker.out")

mkdir -p "$T/ro" "$T/cache" "$T/out"
chown nobody "$T/cache"
head -c 2000000 /dev/urandom > "$T/ro/full.bin"
"$CASCADE" create "$T/ro/full.bin" -b 64K -q > /dev/null
chmod 444 "$T/ro/full.bin"

runuser -u nobody -- "$CASCADE" seed "$T/ro/full.bin.cascade" -t "$tracker" -l 127.0.0.1:0 \
    --cache "$T/cache" > "$T/seed.out" 2> "$T/seed.err" &
PIDS+=($!)
if wait_line "$T/seed.out" "serving"; then
    ok "seed starts on a file it cannot write"
else
    fail "seed did not start: $(cat "$T/seed.err")"
fi
grep -q "31 of 31 blocks" "$T/seed.err" && ok "every block verified and held" ||
    fail "not every block held: $(cat "$T/seed.err")"
if timeout 60 "$CASCADE" get "$T/ro/full.bin.cascade" -o "$T/out/full.bin" -t "$tracker" \
       --cache "$T/getcache" -q && cmp -s "$T/ro/full.bin" "$T/out/full.bin"; then
    ok "cascade get from the read-only seeder gives the original bytes"
else
    fail "cascade get from the read-only seeder"
fi

# A partial read-only file: served as far as it goes, with a clear warning.
head -c 1000000 "$T/ro/full.bin" > "$T/ro/part.bin"
cp "$T/ro/full.bin.cascade" "$T/ro/part.bin.cascade"
chmod 444 "$T/ro/part.bin"
runuser -u nobody -- "$CASCADE" seed "$T/ro/part.bin.cascade" -t "$tracker" -l 127.0.0.1:0 \
    --cache "$T/cache2" > "$T/seed2.out" 2> "$T/seed2.err" &
PIDS+=($!)
wait_line "$T/seed2.out" "serving" || fail "partial seed did not start: $(cat "$T/seed2.err")"
grep -q "read-only: serving the 15 blocks it holds, the other 16 cannot be fetched" "$T/seed2.err" &&
    ok "a partial read-only file is served with a warning" ||
    fail "no clear warning for the partial read-only file: $(cat "$T/seed2.err")"
[ "$(stat -c %s "$T/ro/part.bin")" -eq 1000000 ] && ok "the read-only file was not touched" ||
    fail "the read-only file changed size"

[ "$failures" -eq 0 ] && echo "all read-only seed checks passed"
exit $((failures > 0))
