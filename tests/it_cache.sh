#!/usr/bin/env bash
# The cache, end to end with real mounts:
#   a. a file four times larger than -o cache_max reads end to end (sha256
#      matches), the cache folder never passes the limit plus two blocks
#      (sampled during the read), fetched bytes stay under 1.1 x the file,
#      du in the mount follows, a peer asking for an evicted block hears
#      "not held" (status 2), and the teaching peer's swarm mode still
#      completes from the mount and a seeder;
#   b. kill -9 in the middle of -o fill, three times: each remount fetches
#      no block whose bytes had reached the data file;
#   c. a flipped byte in the cache between mounts is never shown nor
#      served: the block is fetched again and the log says so once;
#   d. -o fill under a limit below the file size stops at the limit, once;
#   e. the cache folder deleted under a running mount: said loudly, recreated,
#      and reads go on;
#   f. cascade cache ls/du/rm/gc/verify, --json parsed, rm of a mounted
#      cascade refused, bad usage exit 2;
#   g. cascade seed --cache-max keeps the data in the cache, under the limit.
# Counts and sizes, not timings: time bounds only guard against hangs.
set -u
. "${CASCADE_SRC:?CASCADE_SRC not set}/tests/mount_lib.sh"
REF="$CASCADE_SRC/tests/interop"

BS=262144
SIZE=$((48 * 1024 * 1024))
LIMIT=$((12 * 1024 * 1024))
BLOCKS=$((SIZE / BS))

make_data "$T/film" "$SIZE"
"$CASCADE" create "$T/film" -b 256K -q >/dev/null || die "create"
CASC=$T/film.cascade
WANT=$(sha256sum <"$T/film" | cut -d' ' -f1)
start_tracker
start_seeder seeder "$T/seedcache" "$CASC"
OPTS="tracker=$TRACKER_ADDR,listen=127.0.0.1:0"
M=$T/m

xattr_n() { local v; v=$(xattr "$1" "$2"); echo "${v:-0}"; }
# cache_bytes DIR: bytes the folder takes on disk.
cache_bytes() { du -s --block-size=1 "$1" 2>/dev/null | cut -f1; }
# serve_addr LOG: where a mount serves blocks.
serve_addr() { sed -n 's/.*serving blocks on \([0-9.]*:[0-9]*\).*/\1/p' "$1" | head -1; }
# ask_block ADDR BLOCK: the status the peer at ADDR answers for BLOCK of
# film (0 only when the bytes it sends match the block's hash).
ask_block() {
    python3 - "$REF" "$CASC" "$1" "$2" <<'PY'
import hashlib, socket, struct, sys
sys.path.insert(0, sys.argv[1])
from cascade_ref import MAGIC, Meta, recv_exact
meta, (host, port), i = Meta(sys.argv[2]), sys.argv[3].rsplit(":", 1), int(sys.argv[4])
with socket.create_connection((host, int(port)), timeout=10) as s:
    s.sendall(MAGIC + bytes(16) + struct.pack(">Q", i) + meta.cascade_hash)
    status, length = struct.unpack(">BQ", recv_exact(s, 9))
    if status == 0 and hashlib.sha256(recv_exact(s, length)).digest() != meta.hashes[i]:
        status = 99   # wrong bytes under "held"
print(status)
PY
}
# good_blocks DATA: how many blocks of DATA match film's hashes.
good_blocks() {
    python3 - "$REF" "$CASC" "$1" <<'PY'
import hashlib, sys
sys.path.insert(0, sys.argv[1])
from cascade_ref import Meta
meta = Meta(sys.argv[2])
good = 0
with open(sys.argv[3], "rb") as f:
    for i in range(meta.count):
        f.seek(i * meta.block_size)
        good += hashlib.sha256(f.read(meta.block_len(i))).digest() == meta.hashes[i]
print(good)
PY
}
flip_byte() {
    python3 -c "import sys; f = open(sys.argv[1], 'r+b'); f.seek(int(sys.argv[2])); b = f.read(1)
f.seek(int(sys.argv[2])); f.write(bytes([b[0] ^ 0x5a]))" "$1" "$2"
}
json_get() { python3 -c "import json, sys; d = json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }

# ---- a. streaming through a small cache ----
C=$T/cache_a
mount_fs "$T/a.log" "$M" -o "$OPTS,cache=$C,cache_max=$LIMIT" "$CASC" || die "mount a"
[ "$(du -k "$M/film" | cut -f1)" = 0 ] && ok "du in the mount: 0 before a read" ||
    fail "du before a read: $(du -k "$M/film")"
( while :; do cache_bytes "$C"; sleep 0.01; done ) >"$T/samples" 2>/dev/null &
SAMPLER=$!
got=$(timeout 300 sha256sum <"$M/film" | cut -d' ' -f1)
kill "$SAMPLER"; wait "$SAMPLER" 2>/dev/null
[ "$got" = "$WANT" ] && ok "a file 4x the limit reads end to end (sha256 matches)" ||
    fail "sha256 through a small cache: $got"
max=$(sort -n "$T/samples" | tail -1)
n=$(wc -l <"$T/samples")
[ "$n" -gt 5 ] && [ "$max" -le $((LIMIT + 2 * BS)) ] &&
    ok "cache folder at most $max bytes in $n samples (limit $LIMIT + 2 blocks)" ||
    fail "cache folder reached $max bytes (limit $LIMIT + 2 blocks; $n samples)"
fetched=$(xattr_n "$M/film" bytes_fetched)
[ "$fetched" -le $((SIZE * 11 / 10)) ] && ok "fetched $fetched bytes for a $SIZE-byte file" ||
    fail "fetched $fetched bytes for a $SIZE-byte file"
for i in $(seq 50); do
    du_k=$(du -k "$M/film" | cut -f1)
    [ "$du_k" -gt 0 ] && break
    sleep 0.1
done
[ "$du_k" -gt 0 ] && [ "$du_k" -le $((LIMIT / 1024 + 16)) ] &&
    ok "du in the mount follows the held bytes: $du_k KiB" || fail "du after a read: $du_k KiB"
ADDR=$(serve_addr "$T/a.log")
st0=$(ask_block "$ADDR" 0) st_last=$(ask_block "$ADDR" $((BLOCKS - 1)))
[ "$st0" = 2 ] && ok "a peer asking for an evicted block hears 'not held' (2)" ||
    fail "evicted block 0 answered with status $st0"
[ "$st_last" = 0 ] && ok "the last block, still held, is served (0)" ||
    fail "held last block answered with status $st_last"
python3 "$REF/ref_peer.py" swarm "$CASC" --tracker "$TRACKER_ADDR" -o "$T/ref_out" \
    >"$T/ref.out" 2>"$T/ref.err" &
REFP=$!
OUR_PIDS+=($REFP)
if wait_for_line "$T/ref.out" '^done ' 240 && cmp -s "$T/ref_out" "$T/film"; then
    ok "the teaching peer's swarm mode completes from the mount and a seeder"
else
    fail "reference swarm peer: $(tail -3 "$T/ref.err")"
fi
stop_pid "$REFP"
unmount_fs "$M" "$MOUNT_PID"

# ---- f. cascade cache: ls, du, rm refused while mounted ----
"$CASCADE" cache ls --cache "$C" --json >"$T/ls.json" || fail "cache ls --json"
[ "$(json_get 'd["cascades"][0]["name"]' <"$T/ls.json")" = film ] &&
    [ "$(json_get 'len(d["cascades"])' <"$T/ls.json")" = 1 ] &&
    [ "$(json_get 'd["cascades"][0]["held_bytes"] <= '"$LIMIT" <"$T/ls.json")" = True ] &&
    [ "$(json_get 'd["cascades"][0]["in_use"]' <"$T/ls.json")" = 0 ] &&
    ok "cache ls --json: film, within the limit, not in use" || fail "cache ls --json: $(cat "$T/ls.json")"
"$CASCADE" cache du --cache "$C" --json >"$T/du.json" &&
    [ "$(json_get 'd["disk_bytes"] == sum(c["disk_bytes"] for c in d["cascades"])' <"$T/du.json")" = True ] &&
    ok "cache du --json parses and adds up" || fail "cache du --json: $(cat "$T/du.json")"
"$CASCADE" cache ls --cache "$C" | grep -q '^film ' && ok "cache ls names film" ||
    fail "cache ls: $("$CASCADE" cache ls --cache "$C")"
mount_fs "$T/f.log" "$M" -o "$OPTS,cache=$C" "$CASC" || die "mount f"
head -c 1000 "$M/film" >/dev/null
"$CASCADE" cache ls --cache "$C" | grep -q 'in use' && ok "cache ls shows the mounted cascade in use" ||
    fail "cache ls while mounted: $("$CASCADE" cache ls --cache "$C")"
"$CASCADE" cache rm film --cache "$C" 2>"$T/rm.err"
rc=$?
[ "$rc" = 1 ] && grep -q 'in use' "$T/rm.err" && [ -n "$(ls "$C")" ] &&
    ok "cache rm of a mounted cascade is refused (exit 1)" || fail "cache rm while mounted: exit $rc, $(cat "$T/rm.err")"
unmount_fs "$M" "$MOUNT_PID"

# ---- b. kill -9 in the middle of a fill: nothing on disk is fetched again ----
C=$T/cache_b
for round in 1 2 3; do
    # The seeder waits (stopped) until the mount is up, so the fill starts
    # while we watch it.
    kill -STOP "$SEEDER_PID"
    mount_fs "$T/b$round.log" "$M" -o "$OPTS,cache=$C,fill" "$CASC" || die "mount b$round"
    kill -CONT "$SEEDER_PID"
    target=$((round * SIZE / 4))
    for i in $(seq 3000); do
        [ "$(xattr_n "$M/film" bytes_fetched)" -ge "$target" ] && break
        sleep 0.01
    done
    kill -9 "$MOUNT_PID"; wait "$MOUNT_PID" 2>/dev/null
    # A dead mount cannot be stat'ed (mountpoint says no): unmount it by name.
    fusermount3 -u "$M" 2>/dev/null || fusermount3 -uz "$M" 2>/dev/null
    on_disk=$(good_blocks "$C"/*/data)
    mount_fs "$T/b${round}r.log" "$M" -o "$OPTS,cache=$C" "$CASC" || die "remount b$round"
    got=$(timeout 300 sha256sum <"$M/film" | cut -d' ' -f1)
    fetched=$(xattr_n "$M/film" bytes_fetched)
    [ "$got" = "$WANT" ] && [ "$fetched" -le $(((BLOCKS - on_disk) * BS)) ] &&
        ok "kill -9 round $round: $on_disk of $BLOCKS blocks on disk, $fetched bytes fetched after" ||
        fail "kill -9 round $round: $on_disk blocks on disk, $fetched bytes fetched (at most $(((BLOCKS - on_disk) * BS))), sha $got"
    unmount_fs "$M" "$MOUNT_PID"
    rm -rf "$C"   # the next round starts empty again
done
grep -q 'written but not yet recorded' "$T"/b?r.log &&
    ok "blocks written but not yet recorded were found, verified and kept" ||
    fail "no remount found unrecorded blocks (the kills came too late?)"

# ---- c. a flipped byte between mounts ----
C=$T/cache_c
mount_fs "$T/c0.log" "$M" -o "$OPTS,cache=$C" "$CASC" || die "mount c0"
cat "$M/film" >/dev/null
unmount_fs "$M" "$MOUNT_PID"
DATA=$(ls "$C"/*/data)
flip_byte "$DATA" $((5 * BS + 100))
flip_byte "$DATA" $((7 * BS + 100))
mount_fs "$T/c.log" "$M" -o "$OPTS,cache=$C" "$CASC" || die "mount c"
ADDR=$(serve_addr "$T/c.log")
st7=$(ask_block "$ADDR" 7)
[ "$st7" = 2 ] && ok "a changed block is not served to a peer ('not held')" ||
    fail "changed block 7 answered with status $st7"
got=$(sha256sum <"$M/film" | cut -d' ' -f1)
fetched=$(xattr_n "$M/film" bytes_fetched)
[ "$got" = "$WANT" ] && ok "the mount never shows the changed bytes (sha256 matches)" ||
    fail "sha256 with a changed cache: $got"
[ "$fetched" = $((2 * BS)) ] && ok "only the two changed blocks were fetched again" ||
    fail "fetched $fetched bytes after two changed blocks"
n5=$(grep -c 'block 5 of .* does not match' "$T/c.log")
[ "$n5" = 1 ] && ok "the log says so once per block" || fail "block 5 mentioned $n5 times: $(grep 'does not match' "$T/c.log")"
st7=$(ask_block "$ADDR" 7)
[ "$st7" = 0 ] && ok "refetched, the block is served again" || fail "block 7 after the refetch: $st7"
unmount_fs "$M" "$MOUNT_PID"

# ---- f. gc and verify on that full cache ----
"$CASCADE" cache gc --max 4M --cache "$C" --json >"$T/gc.json" ||
    fail "cache gc: $(cat "$T/gc.json")"
[ "$(json_get 'd["held_bytes"] <= 4 * 1024 * 1024 and d["freed_bytes"] > 0' <"$T/gc.json")" = True ] &&
    ok "cache gc --max 4M trims the cache" || fail "cache gc --json: $(cat "$T/gc.json")"
held=$("$CASCADE" cache ls --cache "$C" --json | json_get 'd["cascades"][0]["held_bytes"]')
[ "$held" -le $((4 * 1024 * 1024)) ] && [ "$(cache_bytes "$C")" -le $((5 * 1024 * 1024)) ] &&
    ok "after gc: $held bytes held, $(cache_bytes "$C") on disk" || fail "after gc: $held held, $(cache_bytes "$C") on disk"
"$CASCADE" cache verify --cache "$C" >/dev/null && ok "cache verify: all good (exit 0)" ||
    fail "cache verify of a good cache"
last=$(python3 -c "print($SIZE - $BS + 10)")
flip_byte "$DATA" "$last"
"$CASCADE" cache verify --cache "$C" --json >"$T/verify.json"
rc=$?
[ "$rc" = 1 ] && [ "$(json_get 'd["blocks_bad"]' <"$T/verify.json")" = 1 ] &&
    ok "cache verify finds the changed block (exit 1, --json)" || fail "cache verify: exit $rc, $(cat "$T/verify.json")"
"$CASCADE" cache verify --cache "$C" >/dev/null && ok "and dropped it: verify is clean again" ||
    fail "cache verify after dropping"
# (run/: the control sockets' folder when XDG_RUNTIME_DIR is unset, not a cascade)
"$CASCADE" cache rm film --cache "$C" >/dev/null && [ -z "$(ls "$C" | grep -vx run)" ] &&
    ok "cache rm removes an unmounted cascade" || fail "cache rm: $(ls "$C")"

# ---- d. a fill under a limit below the file size ----
C=$T/cache_d
mount_fs "$T/d.log" "$M" -o "$OPTS,cache=$C,cache_max=$LIMIT,fill" "$CASC" || die "mount d"
wait_for_line "$T/d.log" 'the fill stops here' 120 && ok "the fill stops at the limit and says so" ||
    fail "fill under a limit: $(tail -3 "$T/d.log")"
sleep 1
held=$(( $(xattr_n "$M/film" blocks_held) * BS ))
[ "$held" -le "$LIMIT" ] && [ "$held" -gt $((LIMIT / 2)) ] && ok "filled to $held bytes of a $LIMIT limit" ||
    fail "fill under a limit holds $held bytes"
[ "$(grep -c 'the fill stops here' "$T/d.log")" = 1 ] && ok "said once" || fail "said $(grep -c 'the fill stops here' "$T/d.log") times"
unmount_fs "$M" "$MOUNT_PID"

# ---- e. the cache folder deleted under a running mount ----
C=$T/cache_e
mount_fs "$T/e.log" "$M" -o "$OPTS,cache=$C" "$CASC" || die "mount e"
head -c $((4 * BS)) "$M/film" >/dev/null
rm -rf "$C"
wait_for_line "$T/e.log" 'was deleted while in use' 20 && ok "a deleted cache folder is noticed and said" ||
    fail "deleted cache: $(tail -3 "$T/e.log")"
got=$(sha256sum <"$M/film" | cut -d' ' -f1)
[ "$got" = "$WANT" ] && [ -s "$(ls "$C"/*/data 2>/dev/null | head -1)" ] &&
    [ "$(good_blocks "$C"/*/data)" -gt 0 ] &&
    ok "reads go on into a recreated cache folder" || fail "after deleting the cache: sha $got, $(ls -R "$C" 2>&1 | head -3)"
unmount_fs "$M" "$MOUNT_PID"

# ---- cascade seed --cache-max: data in the cache, the fill stops short ----
C=$T/cache_s
"$CASCADE" seed "$CASC" -t "$TRACKER_ADDR" -l 127.0.0.1:0 --cache "$C" --cache-max 4M \
    >"$T/seedmax.out" 2>"$T/seedmax.err" &
SEEDMAX=$!
OUR_PIDS+=($SEEDMAX)
wait_for_line "$T/seedmax.err" 'the fill stops here' 60 && ok "seed --cache-max: the fill stops at the limit" ||
    fail "seed --cache-max: $(tail -3 "$T/seedmax.err")"
for i in $(seq 50); do   # the record says it once its marks are durable (a second)
    held=$("$CASCADE" cache ls --cache "$C" --json | json_get 'd["cascades"][0]["held_bytes"]')
    [ "$held" -gt 0 ] && break
    sleep 0.1
done
[ "$held" -le $((4 * 1024 * 1024)) ] && [ "$held" -gt 0 ] && [ -s "$(ls "$C"/*/data)" ] &&
    ok "seed --cache-max keeps $held bytes in the cache folder" || fail "seed --cache-max holds $held"
stop_pid "$SEEDMAX"

# ---- bad usage of cascade cache: exit 2 with a message ----
for args in "frob" "gc" "gc --max 0" "gc --max 12Q" "rm nosuchname" "ls extra"; do
    # shellcheck disable=SC2086
    "$CASCADE" cache $args --cache "$C" >/dev/null 2>"$T/usage.err"
    rc=$?
    [ "$rc" = 2 ] && [ -s "$T/usage.err" ] && ok "cascade cache $args: exit 2 with a message" ||
        fail "cascade cache $args: exit $rc, $(cat "$T/usage.err")"
done

[ "$failures" = 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "all passed"
