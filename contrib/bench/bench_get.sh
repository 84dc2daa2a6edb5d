#!/usr/bin/env bash
# Benchmark of `cascade get` over loopback against the two local limits it
# competes with: sha256sum (hashing) and cat (reading) of the same file,
# measured in the same run on the same (page-cached) data.
#
#   contrib/bench/bench_get.sh [BUILD_DIR] [SIZE_MIB]
#
# BUILD_DIR defaults to ./build (needs net/cli/cascade and net/cli/cascade-tracker),
# SIZE_MIB to 256. For 1 MiB and 64 KiB blocks and 1 and 4 seeders it
# prints the cold-get rate (empty output file and cache each time) and its
# ratio to sha256sum's rate. Targets: 1 MiB blocks >= 50% of sha256sum;
# 64 KiB blocks no worse than half of that (>= 25%).
# Processes it starts are killed on exit; its temp folder is removed.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${1:-$src/build}
size_mib=${2:-256}
export CASCADE_BUILD=$build
# shellcheck source=tests/swarm_lib.sh
. "$src/tests/swarm_lib.sh"

now() { date +%s.%N; }
rate() { awk -v b="$1" -v t0="$2" -v t1="$3" 'BEGIN { printf "%.1f", b / 1e6 / (t1 - t0) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f%%", 100 * a / b }'; }

bytes=$((size_mib * 1024 * 1024))
echo "preparing a ${size_mib} MiB random file in $T ..."
head -c "$bytes" /dev/urandom >"$T/data"
for bs in 1M 64K; do
    "$CASCADE" create "$T/data" -b "$bs" -o "$T/f$bs.cascade" -q >/dev/null
done

# Local limits, file in the page cache (warm it once first).
cat "$T/data" >/dev/null
t0=$(now); cat "$T/data" >/dev/null; t1=$(now); cat_rate=$(rate "$bytes" "$t0" "$t1")
t0=$(now); sha256sum "$T/data" >/dev/null; t1=$(now); sha_rate=$(rate "$bytes" "$t0" "$t1")
# OpenSSL's SHA-256 (what the store uses; SHA-NI where the CPU has it), for reference.
ossl_rate=
if command -v openssl >/dev/null; then
    t0=$(now); openssl dgst -sha256 "$T/data" >/dev/null; t1=$(now); ossl_rate=$(rate "$bytes" "$t0" "$t1")
fi

start_tracker

# start_seeders N BS: N seeders of f$BS (the same complete data file), own caches.
SEEDS=()
start_seeders() {
    local n=$1 bs=$2 i
    for ((i = 0; i < n; i++)); do
        start_seeder "seed$i" "$T/seedcache-$bs-$i" "$T/f$bs.cascade" --data "$T/data"
        SEEDS+=("$SEEDER_PID")
    done
    # wait until each seeder has adopted (verified) its data and subscribed
    for ((i = 0; i < n; i++)); do
        wait_for_line "$T/seed$i.err" 'blocks held' 120 || die "seeder $i never held its blocks"
    done
    sleep 1
}
stop_seeders() {
    local p
    for p in "${SEEDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    SEEDS=()
}

printf '\n%-28s %10s %10s\n' "" "MB/s" "vs sha256"
printf '%-28s %10s %10s\n' "cat (page cache)" "$cat_rate" "$(ratio "$cat_rate" "$sha_rate")"
printf '%-28s %10s %10s\n' "sha256sum" "$sha_rate" "100%"
[ -n "$ossl_rate" ] && printf '%-28s %10s %10s\n' "openssl dgst -sha256" "$ossl_rate" "$(ratio "$ossl_rate" "$sha_rate")"
for bs in 1M 64K; do
    for n in 1 4; do
        start_seeders "$n" "$bs"
        rm -rf "$T/out" "$T/getcache"
        t0=$(now)
        "$CASCADE" get "$T/f$bs.cascade" -o "$T/out" -t "$TRACKER_ADDR" --cache "$T/getcache" -q
        t1=$(now)
        cmp -s "$T/out" "$T/data" || { echo "get $bs with $n seeders: output differs" >&2; exit 1; }
        r=$(rate "$bytes" "$t0" "$t1")
        target=50; [ "$bs" = 64K ] && target=25
        printf '%-28s %10s %10s   (target >= %d%%)\n' "get, $bs blocks, $n seeder(s)" "$r" \
            "$(ratio "$r" "$sha_rate")" "$target"
        stop_seeders
    done
done
