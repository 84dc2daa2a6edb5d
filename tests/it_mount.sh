#!/usr/bin/env bash
# End-to-end test of cascadefs with real mounts: a tracker and a seeder on
# loopback, then mounts that must show the original bytes through every
# kind of reader, fetch only what a read needs, refuse writes, fail reads
# with EIO (never hang, never wrong bytes) when no honest peer has the data,
# and resume from their cache after an unmount or a kill -9.
set -u
. "${CASCADE_SRC:?CASCADE_SRC not set}/tests/mount_lib.sh"

KiB=1024
MiB=$((1024 * 1024))
SRC=$T/src
mkdir -p "$SRC" "$T/alone"

# ---- data: block sizes 1 KiB, 64 KiB, 1 MiB; empty; size a multiple of the block ----
make_data "$SRC/small1k" $((300 * KiB + 123))
make_data "$SRC/mid64k" $((16 * MiB + 77))
make_data "$SRC/big1m" $((8 * MiB))
: >"$SRC/empty"
make_data "$SRC/even" 4096
for spec in small1k:1K mid64k:64K big1m:1M empty:1K even:1K; do
    name=${spec%%:*}
    "$CASCADE" create "$SRC/$name" -b "${spec#*:}" -q >/dev/null || die "create $name"
done
# For the read-ahead checks (outside SRC: the folder mount below lists SRC).
mkdir -p "$T/rasrc"
make_data "$T/rasrc/ra1m" $((24 * MiB))
"$CASCADE" create "$T/rasrc/ra1m" -b 1M -q >/dev/null || die "create ra1m"
# Files no honest peer has: for the no-peer and lying-peer cases.
make_data "$T/alone/lonely" $((200 * KiB))
"$CASCADE" create "$T/alone/lonely" -b 64K -q >/dev/null || die "create lonely"

start_tracker
start_seeder seeder "$T/seedcache" "$SRC"/*.cascade "$T/rasrc/ra1m.cascade"
OPTS="tracker=$TRACKER_ADDR,listen=127.0.0.1:0"

# ---- a folder of .cascade files: names and sizes before any transfer ----
M=$T/m1
mount_fs "$T/m1.log" "$M" -o "$OPTS,cache=$T/cache1" "$SRC" || die "mount of the folder"
listing=$(cd "$M" && ls | tr '\n' ' ')
[ "$listing" = "big1m empty even mid64k small1k " ] && ok "folder lists one file per .cascade" ||
    fail "listing: '$listing'"
for name in small1k mid64k big1m empty even; do
    [ "$(stat -c %s "$M/$name")" = "$(stat -c %s "$SRC/$name")" ] || fail "size of $name"
done
[ "$(stat -c %a "$M/mid64k")" = 444 ] && [ "$(stat -c %a "$M")" = 555 ] &&
    ok "modes 0444 / 0555" || fail "modes: $(stat -c %a "$M/mid64k") $(stat -c %a "$M")"
[ "$(xattr "$M/mid64k" blocks_held)" = 0 ] && [ "$(xattr "$M/mid64k" bytes_fetched)" = 0 ] &&
    ok "stat and listing fetched nothing" || fail "blocks held before any read"

# ---- a read in the middle fetches only the blocks under it (and little more) ----
off=$((8 * MiB + 5000))
dd if="$M/mid64k" bs=4096 skip=$((off / 4096)) count=1 status=none >"$T/piece" 2>"$T/dd.err" ||
    fail "dd in the middle: $(cat "$T/dd.err")"
dd if="$SRC/mid64k" bs=4096 skip=$((off / 4096)) count=1 status=none | cmp -s - "$T/piece" &&
    ok "dd in the middle gives the original bytes" || fail "dd in the middle: wrong bytes"
held=$(xattr "$M/mid64k" blocks_held)
total=$(xattr "$M/mid64k" blocks_total)
[ -n "$held" ] && [ "$held" -ge 1 ] && [ "$held" -le 8 ] &&
    ok "a 4 KiB random read fetched $held of $total blocks" ||
    fail "a 4 KiB random read left $held of $total blocks held"

# ---- read-ahead follows the reader (1 MiB blocks, the default) ----
# A 2 MiB sequential read fetches at most 8 blocks; four scattered 256 KiB
# reads made of 4 KiB reads fetch at most 4 blocks each beyond what they
# cover (kernel read-ahead included).
R=$T/ra
M_PID=$MOUNT_PID   # the folder mount stays up meanwhile
mount_fs "$T/ra.log" "$R" -o "$OPTS,cache=$T/racache" "$T/rasrc/ra1m.cascade" || die "mount ra1m"
dd if="$R/ra1m" of=/dev/null bs=1M count=2 status=none || fail "dd 2 MiB"
held=$(xattr "$R/ra1m" blocks_held)
[ "$held" -le 8 ] && ok "a 2 MiB read fetched $held blocks" || fail "a 2 MiB read fetched $held blocks"
unmount_fs "$R" "$MOUNT_PID"
mount_fs "$T/ra2.log" "$R" -o "$OPTS,cache=$T/racache2" "$T/rasrc/ra1m.cascade" || die "mount ra1m"
for at in 3 9 15 21; do   # MiB
    dd if="$R/ra1m" of=/dev/null bs=4K count=64 skip=$((at * 256)) status=none || fail "dd at $at MiB"
done
held=$(xattr "$R/ra1m" blocks_held)
[ "$held" -le $((4 * (1 + 4))) ] && ok "four scattered 256 KiB reads fetched $held blocks" ||
    fail "four scattered 256 KiB reads fetched $held blocks (at most 20)"
unmount_fs "$R" "$MOUNT_PID"
MOUNT_PID=$M_PID

# ---- every reader sees the original bytes ----
for name in small1k mid64k big1m empty even; do
    cmp -s "$M/$name" "$SRC/$name" && ok "cat/cmp $name" || fail "cmp $name differs"
done
want=$(sha256sum <"$SRC/big1m")
[ "$(sha256sum <"$M/big1m")" = "$want" ] && ok "sha256sum big1m" || fail "sha256sum big1m"
cp "$M/small1k" "$T/copy" && cmp -s "$T/copy" "$SRC/small1k" && ok "cp small1k" || fail "cp small1k"
[ "$(tail -c 3333 "$M/mid64k" | sha256sum)" = "$(tail -c 3333 "$SRC/mid64k" | sha256sum)" ] &&
    ok "tail -c" || fail "tail -c differs"
for spec in 1:0 4096:1 1000:300 65536:100 7:123456; do
    bs=${spec%%:*} skip=${spec#*:}
    a=$(dd if="$M/mid64k" bs="$bs" skip="$skip" count=3 status=none | sha256sum)
    b=$(dd if="$SRC/mid64k" bs="$bs" skip="$skip" count=3 status=none | sha256sum)
    [ "$a" = "$b" ] || fail "dd bs=$bs skip=$skip differs"
done
ok "dd at offsets"
python3 - "$M/big1m" "$SRC/big1m" <<'EOF' && ok "mmap reader" || fail "mmap reader"
import mmap, sys
with open(sys.argv[1], 'rb') as a, open(sys.argv[2], 'rb') as b:
    ma = mmap.mmap(a.fileno(), 0, access=mmap.ACCESS_READ)
    want = b.read()
    # touch pages out of order, then compare everything
    for off in (len(want) - 1, 3 * 1048576 + 17, 0):
        assert ma[off] == want[off]
    assert ma[:] == want
EOF

# ---- status through xattrs and `cascade status` ----
[ "$(xattr "$M/big1m" blocks_held)" = 8 ] && [ "$(xattr "$M/big1m" map)" = "########" ] &&
    ok "xattrs: blocks_held and map" || fail "xattrs after a full read: $(getfattr -d -m - "$M/big1m")"
[ "$(xattr "$M/big1m" cascade_hash)" = "$(sha256sum <"$SRC/big1m.cascade" | cut -c1-64)" ] &&
    ok "xattr cascade_hash" || fail "xattr cascade_hash"
"$CASCADE" status "$M" >"$T/status.out" 2>&1 &&
    grep -q '^big1m  8/8 blocks (100.0%)' "$T/status.out" && grep -q '^mid64k ' "$T/status.out" &&
    ok "cascade status MOUNTPOINT" || fail "cascade status: $(cat "$T/status.out")"
"$CASCADE" status "$M/small1k" >"$T/status.out" 2>&1 && grep -q '^small1k ' "$T/status.out" &&
    ok "cascade status FILE" || fail "cascade status FILE: $(cat "$T/status.out")"
"$CASCADE" status "$T" >"$T/status.out" 2>&1
[ $? = 1 ] && grep -q 'not a cascadefs mount' "$T/status.out" &&
    ok "cascade status refuses a plain folder" || fail "status of a plain folder: $(cat "$T/status.out")"

# ---- writes get EROFS ----
for cmd in "echo x >'$M/even'" "echo x >>'$M/even'" "touch '$M/new'" "mkdir '$M/d'" \
           "rm -f '$M/even'" "truncate -s 0 '$M/even'" "mv '$M/even' '$M/odd'" \
           "setfattr -n user.x -v 1 '$M/even'"; do
    out=$(bash -c "$cmd" 2>&1) && fail "'$cmd' succeeded"
    case $out in *"Read-only file system"*) ;; *) fail "'$cmd': $out" ;; esac
done
python3 - "$M/even" <<'EOF' && ok "writes get EROFS" || fail "open for writing"
import errno, os, sys
for flags in (os.O_WRONLY, os.O_RDWR):
    try:
        os.open(sys.argv[1], flags)
        sys.exit(1)
    except OSError as e:
        assert e.errno == errno.EROFS, e
EOF
cmp -s "$M/even" "$SRC/even" || fail "even changed after write attempts"

# ---- unmount and remount with the same cache: held blocks stay held ----
unmount_fs "$M" "$MOUNT_PID"
ok "fusermount3 -u ends the process"
mount_fs "$T/m1b.log" "$M" -o "$OPTS,cache=$T/cache1" "$SRC" || die "remount"
[ "$(xattr "$M/big1m" blocks_held)" = 8 ] && [ "$(xattr "$M/small1k" blocks_held)" = 301 ] &&
    ok "remount shows held blocks" || fail "remount: held $(xattr "$M/big1m" blocks_held)"
cmp -s "$M/big1m" "$SRC/big1m" && cmp -s "$M/small1k" "$SRC/small1k" ||
    fail "reads after remount differ"
[ "$(xattr "$M/big1m" bytes_fetched)" = 0 ] && [ "$(xattr "$M/small1k" bytes_fetched)" = 0 ] &&
    ok "no new fetch after remount" || fail "fetched again: $(xattr "$M/big1m" bytes_fetched)"
unmount_fs "$M" "$MOUNT_PID"

# ---- both ways of answering a read give the original bytes: splicing from
# the data file (the default, where the kernel and pipe limits allow) and
# copying through memory (-o nosplice, and the fallback) ----
if grep -q "read replies spliced from the data file" "$T/m1.log"; then
    ok "reads are spliced from the data file"
else
    echo "note: this machine cannot splice read replies: $(grep 'read replies' "$T/m1.log")"
fi
mount_fs "$T/m1c.log" "$M" -o "$OPTS,cache=$T/cache1,nosplice" "$SRC" || die "mount with nosplice"
grep -q "read replies copied through memory" "$T/m1c.log" && ok "-o nosplice copies read replies" ||
    fail "-o nosplice: $(grep 'read replies' "$T/m1c.log")"
for name in small1k mid64k big1m empty even; do
    cmp -s "$M/$name" "$SRC/$name" || fail "cmp $name differs with nosplice"
done
ok "cmp of every file with nosplice"
unmount_fs "$M" "$MOUNT_PID"

# ---- two readers at once on a fresh cache; each block fetched once ----
mount_fs "$T/m2.log" "$M" -o "$OPTS,cache=$T/cache2" "$SRC/mid64k.cascade" || die "mount 2"
cmp -s "$M/mid64k" "$SRC/mid64k" & r1=$!
cmp -s "$M/mid64k" "$SRC/mid64k" & r2=$!
wait $r1 && wait $r2 && ok "two readers at once" || fail "two readers at once"
fetched=$(xattr "$M/mid64k" bytes_fetched)
[ "$fetched" = "$(stat -c %s "$SRC/mid64k")" ] && ok "each block fetched once" ||
    fail "bytes_fetched $fetched for a $(stat -c %s "$SRC/mid64k")-byte file"

# ---- kill -9, clean up the dead mount, remount: only verified data shows ----
kill -9 "$MOUNT_PID"; wait "$MOUNT_PID" 2>/dev/null
fusermount3 -u "$M" 2>/dev/null || umount -l "$M"
mount_fs "$T/m3.log" "$M" -o "$OPTS,cache=$T/cache3" "$SRC/big1m.cascade" || die "mount 3"
dd if="$M/big1m" bs=1M count=3 status=none >/dev/null || fail "partial read before kill"
kill -9 "$MOUNT_PID"; wait "$MOUNT_PID" 2>/dev/null
fusermount3 -u "$M" 2>/dev/null || umount -l "$M"
mount_fs "$T/m3b.log" "$M" -o "$OPTS,cache=$T/cache3" "$SRC/big1m.cascade" || die "remount after kill -9"
[ "$(sha256sum <"$M/big1m")" = "$want" ] && ok "after kill -9 and remount the file is intact" ||
    fail "after kill -9: sha256 differs"
unmount_fs "$M" "$MOUNT_PID"

# ---- -o fill fetches everything in the background; -o data uses a local file ----
mount_fs "$T/m6.log" "$M" -o "$OPTS,cache=$T/cache6,fill" "$SRC/mid64k.cascade" || die "mount fill"
total=$(xattr "$M/mid64k" blocks_total)
for i in $(seq 300); do
    [ "$(xattr "$M/mid64k" blocks_held)" = "$total" ] && break
    sleep 0.1
done
[ "$(xattr "$M/mid64k" blocks_held)" = "$total" ] && ok "fill fetched all $total blocks unread" ||
    fail "fill: $(xattr "$M/mid64k" blocks_held) of $total blocks after 30 s"
unmount_fs "$M" "$MOUNT_PID"
cp "$SRC/big1m" "$T/local-big1m"
mount_fs "$T/m7.log" "$M" -o "$OPTS,cache=$T/cache7,data=$T/local-big1m" "$SRC/big1m.cascade" ||
    die "mount data="
[ "$(xattr "$M/big1m" blocks_held)" = 8 ] && cmp -s "$M/big1m" "$SRC/big1m" &&
    [ "$(xattr "$M/big1m" bytes_fetched)" = 0 ] && ok "data= file adopted, nothing fetched" ||
    fail "data=: held $(xattr "$M/big1m" blocks_held), fetched $(xattr "$M/big1m" bytes_fetched)"
unmount_fs "$M" "$MOUNT_PID"

# ---- no peer has the file: EIO after the timeout, no hang ----
mount_fs "$T/m4.log" "$M" -o "$OPTS,cache=$T/cache4,timeout=3" "$T/alone/lonely.cascade" ||
    die "mount lonely"
start=$(date +%s)
out=$(timeout 60 cat "$M/lonely" 2>&1 >/dev/null)
rc=$?
[ $rc != 0 ] && [ $rc != 124 ] && case $out in *"Input/output error"*) true ;; *) false ;; esac &&
    ok "no peers: EIO after $(( $(date +%s) - start )) s" || fail "no peers: rc $rc, '$out'"
unmount_fs "$M" "$MOUNT_PID"

# ---- a lying or stalling peer is the only peer: EIO, never wrong bytes ----
if [ -x "$BAD_PEER" ]; then
    for mode in wrong-hash stall; do
        "$BAD_PEER" --mode "$mode" --tracker "$TRACKER_ADDR" --listen 127.0.0.1:0 \
            --cascade "$T/alone/lonely.cascade" --data "$T/alone/lonely" \
            >"$T/bad-$mode.out" 2>&1 &
        bad=$!
        OUR_PIDS+=($bad)
        wait_for_line "$T/bad-$mode.out" 'listening on' 10 ||
            die "bad_peer $mode did not start: $(cat "$T/bad-$mode.out")"
        mount_fs "$T/m5-$mode.log" "$M" -o "$OPTS,cache=$T/cache5-$mode,timeout=3" \
            "$T/alone/lonely.cascade" || die "mount with a $mode peer"
        timeout 60 cat "$M/lonely" >"$T/got" 2>"$T/got.err"
        rc=$?
        [ $rc != 0 ] && [ $rc != 124 ] && grep -q "Input/output error" "$T/got.err" &&
            cmp -s "$T/got" <(head -c "$(stat -c %s "$T/got")" "$T/alone/lonely") &&
            [ "$(xattr "$M/lonely" blocks_held)" = 0 ] &&
            ok "$mode peer: EIO, no wrong bytes" || fail "$mode peer: rc $rc $(cat "$T/got.err")"
        unmount_fs "$M" "$MOUNT_PID"
        stop_pid "$bad"
    done
else
    echo "note: $BAD_PEER not built; lying/stalling peer cases not run"
fi

# ---- bad usage and bad input never mount ----
"$CASCADEFS" "$CASCADE_VECTORS/bad-magic.cascade" "$M" 2>"$T/err"
[ $? = 2 ] && grep -q "magic" "$T/err" && ok "bad .cascade: exit 2" || fail "bad .cascade: $(cat "$T/err")"
"$CASCADEFS" "$SRC/big1m.cascade" 2>/dev/null
[ $? = 2 ] && ok "missing mount point: exit 2" || fail "missing mount point"
mountpoint -q "$M" && fail "something is mounted on $M"

# ---- background mode (the default) and SIGTERM ----
"$CASCADEFS" -o "$OPTS,cache=$T/cache1" "$SRC/even.cascade" "$M" 2>"$T/bg.err"
if [ $? = 0 ] && mountpoint -q "$M"; then
    OUR_MOUNTS+=("$M")
    pid=$(pgrep -nf "^$CASCADEFS -o $OPTS,cache=$T/cache1 $SRC/even.cascade")
    cmp -s "$M/even" "$SRC/even" && ok "background mount reads" || fail "background read"
    [ -n "$pid" ] && kill -TERM "$pid"
    for i in $(seq 100); do mountpoint -q "$M" || break; sleep 0.1; done
    mountpoint -q "$M" && fail "SIGTERM did not unmount" || ok "SIGTERM unmounts"
else
    fail "background mount: $(cat "$T/bg.err")"
fi

[ "$failures" = 0 ] || { echo "$failures failure(s)"; exit 1; }
echo "all passed"
