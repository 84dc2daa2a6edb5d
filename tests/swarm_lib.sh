# Shared by the loopback integration tests and the benchmarks: program paths,
# a fresh temp folder, the processes and mounts we started (and only those)
# cleaned up on exit, bounded waits, a tracker and seeders on 127.0.0.1.
#
# Source it after setting CASCADE_BUILD. It sets T and an EXIT trap.
# Programs: $CASCADE, $TRACKER, $BAD_PEER. Results: ok, fail (counts into
# $failures), die (exits 1).

CASCADE="${CASCADE_BUILD:?CASCADE_BUILD not set}/net/cli/cascade"
TRACKER="$CASCADE_BUILD/net/cli/cascade-tracker"
BAD_PEER="${CASCADE_HELPERS:-$CASCADE_BUILD/tests}/bad_peer"

skip() { echo "SKIP: $*"; exit 77; }
for p in "$CASCADE" "$TRACKER"; do
    [ -x "$p" ] || skip "$p is not built"
done

T=$(mktemp -d) || exit 1
OUR_PIDS=()
OUR_MOUNTS=()

failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }
die() { echo "FAIL: $*"; exit 1; }

unmount_quietly() {
    local mp=$1
    mountpoint -q "$mp" 2>/dev/null || return 0
    fusermount3 -u "$mp" 2>/dev/null || fusermount3 -uz "$mp" 2>/dev/null ||
        umount -l "$mp" 2>/dev/null
}

# stop_pid PID: SIGTERM, up to 10 s, then SIGKILL. Returns the process's
# exit status (99 when it had to be killed).
stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        return 99
    fi
    wait "$pid" 2>/dev/null
}

swarm_lib_cleanup() {
    local mp pid
    for mp in "${OUR_MOUNTS[@]+"${OUR_MOUNTS[@]}"}"; do unmount_quietly "$mp"; done
    for pid in "${OUR_PIDS[@]+"${OUR_PIDS[@]}"}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${OUR_PIDS[@]+"${OUR_PIDS[@]}"}"; do stop_pid "$pid"; done
    rm -rf "$T"
}
trap swarm_lib_cleanup EXIT

# wait_for_line FILE REGEX SECONDS: poll until FILE has a matching line.
wait_for_line() {
    local i
    for i in $(seq $(($3 * 10))); do
        grep -qE -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# addr_in FILE: the IP:PORT of the first 'listening on IP:PORT' line.
addr_in() {
    sed -n 's/.*listening on \([0-9.]*:[0-9]*\).*/\1/p' "$1" | head -1
}

# start_tracker [TRACKER OPTIONS]: sets TRACKER_ADDR (127.0.0.1:PORT).
start_tracker() {
    "$TRACKER" --listen 127.0.0.1:0 "$@" >"$T/tracker.out" 2>"$T/tracker.err" &
    OUR_PIDS+=($!)
    wait_for_line "$T/tracker.out" 'listening on' 10 ||
        die "tracker did not start: $(cat "$T/tracker.err")"
    TRACKER_ADDR=$(addr_in "$T/tracker.out")
    [ -n "$TRACKER_ADDR" ] || die "no address in the tracker's output: $(cat "$T/tracker.out")"
}

# start_seeder NAME CACHE FILE.cascade... [seed options]: `cascade seed`
# (data next to each .cascade file unless --data); sets SEEDER_PID.
start_seeder() {
    local name=$1 cache=$2; shift 2
    "$CASCADE" seed "$@" -t "$TRACKER_ADDR" -l 127.0.0.1:0 --cache "$cache" \
        >"$T/$name.out" 2>"$T/$name.err" &
    SEEDER_PID=$!
    OUR_PIDS+=($SEEDER_PID)
    wait_for_line "$T/$name.out" 'serving' 30 ||
        die "seeder $name did not start: $(cat "$T/$name.err")"
}

# make_data PATH SIZE: pseudo-random content (reproducible per PATH name).
make_data() {
    python3 - "$1" "$2" <<'PY'
import random, sys
path, size = sys.argv[1], int(sys.argv[2])
rng = random.Random(path.rsplit('/', 1)[-1])
with open(path, 'wb') as f:
    while size > 0:
        n = min(size, 1 << 20)
        f.write(rng.randbytes(n))
        size -= n
PY
}
