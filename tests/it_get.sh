#!/usr/bin/env bash
# Integration test for `cascade get` and `cascade seed` over loopback: a real
# cascade-tracker on a free port, 1, 3 and 8 seeders (each with its own
# cache), files with 1 KiB, 64 KiB and 1 MiB blocks, the empty file and an
# even-size file; every result is compared byte for byte with the original.
# Also: resume from a partial file, seeders that start empty and fill from
# each other, a clean error (exit 1) when nobody has the file, bad usage
# (exit 2), and a clean exit 0 of seed on SIGTERM.
set -u

# shellcheck source=tests/swarm_lib.sh
. "${CASCADE_SRC:?CASCADE_SRC not set}/tests/swarm_lib.sh"
V="${CASCADE_VECTORS:?CASCADE_VECTORS not set}"

# start_seed NAME FILE.cascade...: a seeder with its own cache; sets SEEDER_PID.
start_seed() {
    local name=$1; shift
    start_seeder "$name" "$T/$name.cache" "$@"
}

# get NAME FILE.cascade OUT [extra args]: run get (bounded), check exit 0 and bytes.
get_ok() {
    local name=$1 cas=$2 out=$3 orig=$4; shift 4
    if timeout 120 "$CASCADE" get "$cas" -o "$out" -t "$TRACKER_ADDR" --cache "$T/getcache" -q "$@" \
        >"$T/get.out" 2>"$T/get.err"; then
        if cmp -s "$out" "$orig"; then ok "$name"; else fail "$name: output differs from the original"; fi
    else
        fail "$name: get exited $?: $(head -c 600 "$T/get.err")"
    fi
}

# ---- the data: one 3 MiB + 123 byte random file under three block sizes ----
mkdir -p "$T/src"
head -c $((3 * 1024 * 1024 + 123)) /dev/urandom >"$T/src/data" || die "no random data"
for bs in 1K 64K 1M 2M; do   # (2M: blocks larger than get's 1 MiB read-back chunk)
    cp "$T/src/data" "$T/src/f$bs"
    "$CASCADE" create "$T/src/f$bs" -b "$bs" -q >/dev/null || die "create f$bs failed"
done
cp "$V/empty.bin" "$V/empty.bin.cascade" "$V/even4096.bin" "$V/even4096.bin.cascade" "$T/src/"
ALL=("$T/src/f1K.cascade" "$T/src/f64K.cascade" "$T/src/f1M.cascade" "$T/src/f2M.cascade"
     "$T/src/empty.bin.cascade" "$T/src/even4096.bin.cascade")

start_tracker
ok "tracker on $TRACKER_ADDR"

# ---- usage errors first (no network needed) ----
"$CASCADE" get >/dev/null 2>&1; [ $? -eq 2 ] && ok "get without arguments: exit 2" || fail "get without arguments"
"$CASCADE" get "$V/bad-magic.cascade" -o "$T/x" -t "$TRACKER_ADDR" 2>"$T/err"
[ $? -eq 2 ] && ok "get of a bad .cascade: exit 2" || fail "get of a bad .cascade: $(cat "$T/err")"
"$CASCADE" get --help | grep -q "usage: cascade get" && ok "get --help" || fail "get --help"
"$CASCADE" seed --help | grep -q "usage: cascade seed" && ok "seed --help" || fail "seed --help"
"$CASCADE" seed a.cascade b.cascade --data x >/dev/null 2>&1
[ $? -eq 2 ] && ok "seed --data with two files: exit 2" || fail "seed --data with two files"
"$CASCADE" get "$T/src/f1M.cascade" --timeout 0 2>/dev/null
[ $? -eq 2 ] && ok "get --timeout 0: exit 2" || fail "get --timeout 0"

# ---- nobody has it: a clear error within the timeout ----
start=$(date +%s)
timeout 60 "$CASCADE" get "$T/src/f64K.cascade" -o "$T/none" -t "$TRACKER_ADDR" --cache "$T/nc" -q --timeout 4 \
    >/dev/null 2>"$T/err"
rc=$?
[ $rc -eq 1 ] && ok "get with no seeder: exit 1" || fail "get with no seeder: exit $rc"
grep -q "no peer could provide block 0" "$T/err" && grep -q "$TRACKER_ADDR" "$T/err" &&
    ok "get with no seeder: clear message" || fail "get with no seeder: message: $(cat "$T/err")"
[ $(($(date +%s) - start)) -lt 30 ] || fail "get with no seeder took too long"

# ---- one complete seeder serving every file ----
mkdir -p "$T/s1"
start_seed s1 "${ALL[@]}"
S1=$SEEDER_PID
grep -q "serving 6 files on 127.0.0.1:" "$T/s1.out" && ok "seed prints where it serves" ||
    fail "seed output: $(cat "$T/s1.out")"
mkdir -p "$T/out1"
for bs in 1K 64K 1M 2M; do
    get_ok "1 seeder, $bs blocks" "$T/src/f$bs.cascade" "$T/out1/f$bs" "$T/src/data"
done
get_ok "1 seeder, empty file" "$T/src/empty.bin.cascade" "$T/out1/empty" "$V/empty.bin"
get_ok "1 seeder, even-size file" "$T/src/even4096.bin.cascade" "$T/out1/even" "$V/even4096.bin"

# DATA defaults to the .cascade's name in the current folder.
mkdir -p "$T/cwd"
(cd "$T/cwd" && timeout 120 "$CASCADE" get "$T/src/f64K.cascade" -t "$TRACKER_ADDR" --cache "$T/cwdcache" -q) \
    && cmp -s "$T/cwd/f64K" "$T/src/data" && ok "get writes NAME in the current folder" ||
    fail "get without -o: $(ls "$T/cwd")"

# ---- resume: a partial file is completed; a complete one needs no peer ----
head -c $((1024 * 1024 + 5000)) "$T/src/data" >"$T/out1/part"
get_ok "resume a partial file" "$T/src/f64K.cascade" "$T/out1/part" "$T/src/data"
# the corrupt middle of a partial file is refetched, not trusted
cp "$T/src/data" "$T/out1/corrupt"
printf 'XXXXXXXX' | dd of="$T/out1/corrupt" bs=1 seek=200000 conv=notrunc 2>/dev/null
get_ok "resume refetches a corrupt block" "$T/src/f64K.cascade" "$T/out1/corrupt" "$T/src/data" --cache "$T/cc"

# ---- 3 seeders: two start empty and fill from the first and each other ----
for n in 2 3; do
    mkdir -p "$T/s$n"
    for bs in 1K 64K 1M; do cp "$T/src/f$bs.cascade" "$T/s$n/"; done
    start_seed "s$n" "$T/s$n/f1K.cascade" "$T/s$n/f64K.cascade" "$T/s$n/f1M.cascade"
    eval "S$n=\$SEEDER_PID"
done
for n in 2 3; do
    for bs in 1K 64K 1M; do
        for ((i = 0; i < 600; i++)); do cmp -s "$T/s$n/f$bs" "$T/src/data" && break; sleep 0.1; done
        cmp -s "$T/s$n/f$bs" "$T/src/data" && ok "empty seeder s$n filled f$bs" ||
            fail "seeder s$n did not fill f$bs: $(tail -3 "$T/s$n.err")"
    done
done
mkdir -p "$T/out3"
for bs in 1K 64K 1M; do
    get_ok "3 seeders, $bs blocks" "$T/src/f$bs.cascade" "$T/out3/f$bs" "$T/src/data" --cache "$T/gc3"
done
# the first seeder goes away: the others still serve
stop_pid "$S1"; rc=$?
[ $rc -eq 0 ] && ok "seed exits 0 on SIGTERM" || fail "seed exit on SIGTERM: $rc"
get_ok "without the first seeder" "$T/src/f1M.cascade" "$T/out3/again" "$T/src/data" --cache "$T/gc3b"

# ---- 8 more seeders with complete copies ----
for n in 4 5 6 7 8 9 10 11; do
    mkdir -p "$T/s$n"
    for bs in 1K 64K 1M; do cp "$T/src/f$bs.cascade" "$T/s$n/"; cp "$T/src/data" "$T/s$n/f$bs"; done
    start_seed "s$n" "$T/s$n/f1K.cascade" "$T/s$n/f64K.cascade" "$T/s$n/f1M.cascade"
done
mkdir -p "$T/out8"
for bs in 64K 1M 1K; do
    get_ok "8+ seeders, $bs blocks" "$T/src/f$bs.cascade" "$T/out8/f$bs" "$T/src/data" --cache "$T/gc8" -v
done
# (the 1K file: 3073 blocks, enough work for the pipelines of several peers)
grep -q "fetched block" "$T/get.err" && ok "-v logs each fetch" || fail "-v shows no fetches"
peers=$(sed -n 's/.*fetched block [0-9]* ([0-9]* bytes) from \([0-9.:]*\).*/\1/p' "$T/get.err" | sort -u | wc -l)
[ "$peers" -ge 2 ] && ok "get used $peers seeders at once" || fail "get used only $peers seeder(s)"

echo "$failures failure(s)"
[ "$failures" -eq 0 ]
