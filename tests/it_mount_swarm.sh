#!/usr/bin/env bash
# A mount serves while mounted: mount A fetches from a seeder, the seeder
# goes away, then mount B (its own cache) and `cascade get` read everything
# from A alone.
set -u
. "${CASCADE_SRC:?CASCADE_SRC not set}/tests/mount_lib.sh"

SRC=$T/src
mkdir -p "$SRC"
make_data "$SRC/film" $((6 * 1024 * 1024 + 4321))
make_data "$SRC/notes" $((100 * 1024 + 1))
"$CASCADE" create "$SRC/film" -b 256K -q >/dev/null || die "create film"
"$CASCADE" create "$SRC/notes" -b 1K -q >/dev/null || die "create notes"

start_tracker
start_seeder seeder "$T/seedcache" "$SRC/film.cascade" "$SRC/notes.cascade"
OPTS="tracker=$TRACKER_ADDR,listen=127.0.0.1:0"

# ---- A reads everything from the seeder ----
A=$T/a
mount_fs "$T/a.log" "$A" -o "$OPTS,cache=$T/cache-a" "$SRC/film.cascade" "$SRC/notes.cascade" ||
    die "mount A"
A_PID=$MOUNT_PID
cmp -s "$A/film" "$SRC/film" && cmp -s "$A/notes" "$SRC/notes" && ok "A reads from the seeder" ||
    fail "A: wrong bytes"
[ "$(xattr "$A" server)" != "" ] || fail "A shows no server address"

# ---- the seeder goes away; B reads from A ----
stop_pid "$SEEDER_PID"
ok "seeder stopped"
B=$T/b
mount_fs "$T/b.log" "$B" -o "$OPTS,cache=$T/cache-b,timeout=30" "$SRC/film.cascade" \
    "$SRC/notes.cascade" || die "mount B"
B_PID=$MOUNT_PID
cmp -s "$B/film" "$SRC/film" && cmp -s "$B/notes" "$SRC/notes" && ok "B reads everything from A" ||
    fail "B: wrong bytes or EIO: $(tail -3 "$T/b.log")"
served=$(xattr "$A/film" bytes_served)
[ -n "$served" ] && [ "$served" -ge "$(stat -c %s "$SRC/film")" ] &&
    ok "A served $served bytes of film" || fail "A served '$served' bytes of film"
[ "$(xattr "$B/film" bytes_fetched)" = "$(stat -c %s "$SRC/film")" ] ||
    fail "B fetched $(xattr "$B/film" bytes_fetched) bytes"
"$CASCADE" status "$A" | grep -q "^film .*served" || fail "cascade status of A"
unmount_fs "$B" "$B_PID"

# ---- `cascade get` from A alone ----
timeout 120 "$CASCADE" get "$SRC/film.cascade" -o "$T/film.got" -t "$TRACKER_ADDR" \
    --cache "$T/cache-get" --timeout 60 -q >"$T/get.out" 2>&1
rc=$?
[ $rc = 0 ] && cmp -s "$T/film.got" "$SRC/film" && ok "cascade get from A" ||
    fail "cascade get from A: exit $rc: $(tail -3 "$T/get.out")"

unmount_fs "$A" "$A_PID"
[ "$failures" = 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "all passed"
