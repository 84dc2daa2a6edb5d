#!/usr/bin/env bash
# The block server under a slow-request flood: CONNECTIONS connections each
# trickle a valid request a byte a second (and reconnect when closed) while
# an honest client from another address asks for one block.
#
#   contrib/bench/bench_server_attack.sh [BUILD_DIR] [CONNECTIONS] [SECONDS]
#
# BUILD_DIR defaults to ./build (needs tests/serve_blocks and
# tests/slow_clients, and the programs tests/swarm_lib.sh checks for);
# CONNECTIONS to 4200, SECONDS to 30. Two rounds: every attacker from
# 127.0.1.1, then spread over 127.0.1.1-127.0.1.100; the honest client is
# 127.0.0.1. Each round starts a fresh server (tests/serve_blocks, the block
# server with its default limits) and prints how long the honest client
# waited, what the server did with the attackers (shed at a cap, refused,
# closed at the request deadline) and the server's CPU time over the round.
# Exit 0 when the honest client got its block in every round, 1 otherwise.
# Processes it starts are killed on exit; its temp folder is removed.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${1:-$src/build}
connections=${2:-4200}
seconds=${3:-30}
export CASCADE_BUILD=$build
# shellcheck source=tests/swarm_lib.sh
. "$src/tests/swarm_lib.sh"

helpers=${CASCADE_HELPERS:-$build/tests}
SERVE=$helpers/serve_blocks
SLOW=$helpers/slow_clients
for p in "$SERVE" "$SLOW"; do
    [ -x "$p" ] || die "$p is not built (ninja -C $build)"
done
tick=$(getconf CLK_TCK)

# cpu_seconds PID: user + system CPU time of a running process.
cpu_seconds() {
    awk -v t="$tick" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"
}
# forget_pid PID: a stopped process leaves OUR_PIDS (the exit trap must not
# signal a number the system may have given to someone else).
forget_pid() {
    local p keep=()
    for p in "${OUR_PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    OUR_PIDS=("${keep[@]+"${keep[@]}"}")
}
# stat_of FILE NAME: a value from serve_blocks' "stats name=value ..." line.
stat_of() {
    sed -n "s/.* $2=\([0-9]*\).*/\1/p" "$1" | head -1
}
# field_of LINE NAME: a value from slow_clients' "name=value ..." line.
field_of() {
    sed -n "s/.*\b$2=\([^ ]*\).*/\1/p" <<<"$1"
}

make_data "$T/data" $((16 * 1024 * 1024))
echo "slow-request flood: $connections connections, one byte a second each, reconnecting;" \
     "$seconds s a round; descriptor limit $(ulimit -Hn) (hard)"
printf '%-14s %-7s %9s %6s %8s %8s %10s %12s\n' \
    round honest waited tries shed refused timed-out "server CPU"

status=0
round() {
    local name=$1 from=$2 out=$T/serve-$1.out err=$T/serve-$1.err pid line cpu honest waited
    "$SERVE" --data "$T/data" --cache "$T/cache-$name" >"$out" 2>"$err" &
    pid=$!
    OUR_PIDS+=("$pid")
    wait_for_line "$out" 'listening on' 60 || die "serve_blocks did not start: $(cat "$err")"
    line=$("$SLOW" --server "$(addr_in "$out")" --hash "$(sed -n 's/^hash //p' "$out")" \
        --connections "$connections" --from "$from" --seconds "$seconds" --reconnect \
        --honest-from 127.0.0.1 --honest-block 3 2>>"$T/slow-$name.err") || status=1
    cpu=$(cpu_seconds "$pid")
    stop_pid "$pid" || die "serve_blocks did not stop cleanly: $(cat "$err")"
    forget_pid "$pid"
    [ "$(field_of "$line" connect_failed)" = 0 ] ||
        echo "  ($(field_of "$line" connect_failed) attacker connects failed: ulimit -n?)"
    honest=$(field_of "$line" honest)
    waited="$(field_of "$line" honest_ms) ms"
    [ "$honest" = ok ] || waited=-
    printf '%-14s %-7s %9s %6s %8s %8s %10s %6s s %3s%%\n' "$name" "$honest" "$waited" \
        "$(field_of "$line" honest_attempts)" "$(stat_of "$out" connections_shed)" \
        "$(stat_of "$out" connections_refused)" "$(stat_of "$out" requests_timed_out)" \
        "$cpu" "$(awk -v c="$cpu" -v s="$seconds" 'BEGIN { printf "%.1f", 100 * c / s }')"
    [ "$honest" = ok ] || cat "$T/slow-$name.err"
}
round 1-address 127.0.1.1
round 100-addresses 127.0.1.1-127.0.1.100
echo "waited: the honest client's first connect to the last byte of its block (1 MiB);"
echo "shed: attackers closed to make room at a cap; timed-out: closed at the 10 s request deadline"
exit $status
