#!/usr/bin/env bash
# `cascade seed` of a data file the seeder may read but not write (a root-
# owned 0444 file seeded by `nobody`): the file is verified and served, and
# `cascade get` from it gives the original bytes; a partial read-only file
# is served as far as it goes, with a warning naming what is missing.
set -u
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root to run the seeder as another user"; exit 77; }
command -v runuser >/dev/null && id nobody >/dev/null 2>&1 ||
    { echo "SKIP: needs runuser and the user nobody"; exit 77; }
# shellcheck source=tests/swarm_lib.sh
. "${CASCADE_SRC:?CASCADE_SRC not set}/tests/swarm_lib.sh"
chmod 755 "$T"   # nobody must reach the data and its cache folder

start_tracker
tracker=$TRACKER_ADDR

mkdir -p "$T/ro" "$T/cache" "$T/out"
chown nobody "$T/cache"
head -c 2000000 /dev/urandom > "$T/ro/full.bin"
"$CASCADE" create "$T/ro/full.bin" -b 64K -q > /dev/null
chmod 444 "$T/ro/full.bin"

runuser -u nobody -- "$CASCADE" seed "$T/ro/full.bin.cascade" -t "$tracker" -l 127.0.0.1:0 \
    --cache "$T/cache" > "$T/seed.out" 2> "$T/seed.err" &
OUR_PIDS+=($!)
if wait_for_line "$T/seed.out" "serving" 10; then
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
OUR_PIDS+=($!)
wait_for_line "$T/seed2.out" "serving" 10 || fail "partial seed did not start: $(cat "$T/seed2.err")"
grep -q "read-only: serving the 15 blocks it holds, the other 16 cannot be fetched" "$T/seed2.err" &&
    ok "a partial read-only file is served with a warning" ||
    fail "no clear warning for the partial read-only file: $(cat "$T/seed2.err")"
[ "$(stat -c %s "$T/ro/part.bin")" -eq 1000000 ] && ok "the read-only file was not touched" ||
    fail "the read-only file changed size"

[ "$failures" -eq 0 ] && echo "all read-only seed checks passed"
exit $((failures > 0))
