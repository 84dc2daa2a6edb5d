#!/usr/bin/env bash
# Figures for cascade-tracker under the attacks tests/it_tracker.sh checks:
# the tracker's CPU, how honest list requests fare (answered, latency, the
# seeder present) and how much it logs, with and without an attack.
#
#   contrib/bench/bench_tracker_attack.sh [BUILD_DIR] [SECONDS] [HASHES]
#
# BUILD_DIR defaults to ./build (needs net/cli/cascade-tracker and
# tests/tracker_flood), SECONDS (default 10) is how long the silent
# connections are held, HASHES (default 100000) how many random-hash
# subscribes the flood sends; TRACKER_FLOOD=PATH takes the attacker from
# another build (to measure an older tracker). Scenarios, each on a fresh tracker with a
# seeder subscribed from 127.0.0.2 and an honest client listing from
# 127.0.0.1:
#   idle      nothing else going on
#   random    HASHES subscribes for random hashes from 127.0.0.3
#   ports     5,000 subscribes for the seeder's hash with made-up ports
#   silent    under `ulimit -n 256`: 1,100 connections that never send
#             (600 from 127.0.0.3, 50 each from 127.0.0.10-19), each
#             opened again as soon as the tracker sheds it
# Processes it starts are stopped on exit; its temp folder is removed.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${1:-$src/build}
seconds=${2:-10}
hashes=${3:-100000}
export CASCADE_BUILD=$build
# shellcheck source=tests/swarm_lib.sh
. "$src/tests/swarm_lib.sh"
FLOOD=${TRACKER_FLOOD:-$build/tests/tracker_flood}
[ -x "$FLOOD" ] || die "$FLOOD is not built (meson setup -Dtests=enabled)"
hz=$(getconf CLK_TCK)
hash=$(sha256sum "$src/tests/vectors/spec1000.bin.cascade" | cut -d' ' -f1)

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
now() { date +%s.%N; }

# start NAME ULIMIT|-: a tracker with the seeder subscribed; sets tpid, tport.
start() {
    local name=$1 limit=$2
    if [ "$limit" = - ]; then
        "$TRACKER" --listen 127.0.0.1:0 >"$T/$name.out" 2>"$T/$name.err" &
    else
        bash -c 'ulimit -n "$0" && exec "$@"' "$limit" "$TRACKER" --listen 127.0.0.1:0 \
            >"$T/$name.out" 2>"$T/$name.err" &
    fi
    tpid=$!
    OUR_PIDS+=("$tpid")
    wait_for_line "$T/$name.out" 'listening on' 10 || die "tracker did not start: $(cat "$T/$name.err")"
    tport=$(addr_in "$T/$name.out"); tport=${tport##*:}
    # the seeder: 127.0.0.2, port 1
    "$FLOOD" --tracker "127.0.0.1:$tport" --src 127.0.0.2 ports "$hash" 1 >/dev/null
}

# report NAME T0 T1 TICKS0 TICKS1 PROBEFILE EXTRA: one row of the table.
report() {
    local name=$1 t0=$2 t1=$3 k0=$4 k1=$5 probe=$6 extra=$7
    stop_pid "$tpid" || true
    local cpu lines
    cpu=$(awk -v k=$((k1 - k0)) -v hz="$hz" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f%%", 100 * k / hz / (b - a) }')
    lines=$(wc -l <"$T/$name.err")
    read -r _ n _ answered _ found _ _ _ median _ max < "$probe"
    printf '%-8s %6s %9s %9s %8s %8s %6s   %s\n' "$name" "$cpu" "$answered/$n" "$found/$n" \
        "$median" "$max" "$lines" "$extra"
}

printf '%-8s %6s %9s %9s %8s %8s %6s   %s\n' scenario "CPU" answered "seeder" "med ms" \
    "max ms" "log" "attack"

# idle
start idle -
k0=$(cpu_ticks "$tpid"); t0=$(now)
"$FLOOD" --tracker "127.0.0.1:$tport" --count 100 --pause 10 probe "$hash" 127.0.0.2:1 \
    >"$T/idle.probe" 2>/dev/null
t1=$(now); k1=$(cpu_ticks "$tpid")
report idle "$t0" "$t1" "$k0" "$k1" "$T/idle.probe" "-"

# flood NAME ARGS...: the attack from 127.0.0.3 with a probe running alongside.
flood() {
    local name=$1; shift
    start "$name" -
    "$FLOOD" --tracker "127.0.0.1:$tport" --pause 20 probe "$hash" 127.0.0.2:1 \
        >"$T/$name.probe" 2>/dev/null &
    local probe=$!
    k0=$(cpu_ticks "$tpid"); t0=$(now)
    "$FLOOD" --tracker "127.0.0.1:$tport" --src 127.0.0.3 "$@" >"$T/$name.flood"
    t1=$(now); k1=$(cpu_ticks "$tpid")
    kill -TERM "$probe"; wait "$probe" || true
    local rate
    rate=$(awk -v a="$t0" -v b="$t1" '/^requests/ { printf "%d requests, %.0f/s", $2, $2 / (b - a) }' "$T/$name.flood")
    report "$name" "$t0" "$t1" "$k0" "$k1" "$T/$name.probe" "$rate"
}
flood random random "$hashes"
flood ports ports "$hash" 5000

# silent connections under ulimit -n 256
start silent 256
attackers=()
"$FLOOD" --tracker "127.0.0.1:$tport" --src 127.0.0.3 silent 600 "$seconds" >"$T/silent.3" &
attackers+=($!)
for i in $(seq 10 19); do
    "$FLOOD" --tracker "127.0.0.1:$tport" --src "127.0.0.$i" silent 50 "$seconds" \
        >"$T/silent.$i" & attackers+=($!)
done
sleep 1
k0=$(cpu_ticks "$tpid"); t0=$(now)
"$FLOOD" --tracker "127.0.0.1:$tport" --pause 100 --count $(((seconds - 2) * 10)) \
    probe "$hash" 127.0.0.2:1 >"$T/silent.probe" 2>/dev/null
t1=$(now); k1=$(cpu_ticks "$tpid")
wait "${attackers[@]}"
opened=$(awk '{ s += $2 } END { print s }' "$T"/silent.[0-9]*)
report silent "$t0" "$t1" "$k0" "$k1" "$T/silent.probe" \
    "$opened silent connections opened in ${seconds} s"
sed -n 's/.*\(stopped: .*\)/  silent: \1/p' "$T/silent.err"
