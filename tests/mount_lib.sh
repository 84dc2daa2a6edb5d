# Shared by it_mount.sh, it_mount_swarm.sh and contrib/bench/bench_mount.sh:
# start a tracker and seeders on loopback, mount cascadefs in the foreground
# as a background job (so we know its pid), wait for things with bounded
# polls, and clean up only what we started, always unmounting first.
#
# Source it after setting CASCADE_BUILD; it sets T (a fresh temp folder) and
# an EXIT trap. Programs: $CASCADE, $TRACKER, $CASCADEFS, $BAD_PEER.

CASCADE="${CASCADE_BUILD:?CASCADE_BUILD not set}/net/cascade"
TRACKER="$CASCADE_BUILD/net/cascade-tracker"
CASCADEFS="$CASCADE_BUILD/fs/cascadefs"
BAD_PEER="${CASCADE_HELPERS:-$CASCADE_BUILD/tests}/bad_peer"

skip() { echo "SKIP: $*"; exit 77; }
[ -e /dev/fuse ] || skip "/dev/fuse is missing"
command -v fusermount3 >/dev/null || skip "fusermount3 is not installed"
for p in "$CASCADE" "$TRACKER" "$CASCADEFS"; do
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

# Stop pid: TERM, up to 5 s, then KILL.
stop_pid() {
    local pid=$1 i
    kill "$pid" 2>/dev/null || return 0
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}

mount_lib_cleanup() {
    local mp pid
    for mp in "${OUR_MOUNTS[@]}"; do unmount_quietly "$mp"; done
    for pid in "${OUR_PIDS[@]}"; do stop_pid "$pid"; done
    rm -rf "$T"
}
trap mount_lib_cleanup EXIT

# wait_for_line FILE REGEX SECONDS: poll until FILE has a matching line.
wait_for_line() {
    local i
    for i in $(seq $(($3 * 10))); do
        grep -qE -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# start_tracker: sets TRACKER_ADDR (127.0.0.1:PORT).
start_tracker() {
    "$TRACKER" --listen 127.0.0.1:0 >"$T/tracker.out" 2>"$T/tracker.err" &
    OUR_PIDS+=($!)
    wait_for_line "$T/tracker.out" 'listening on' 10 ||
        die "tracker did not start: $(cat "$T/tracker.err")"
    TRACKER_ADDR=$(sed -n 's/.*listening on \([0-9.]*:[0-9]*\).*/\1/p' "$T/tracker.out" | head -1)
    [ -n "$TRACKER_ADDR" ] || die "no address in the tracker's output: $(cat "$T/tracker.out")"
}

# start_seeder NAME CACHE FILE.cascade...: `cascade seed` (data next to each
# .cascade file); sets SEEDER_PID.
start_seeder() {
    local name=$1 cache=$2; shift 2
    "$CASCADE" seed "$@" -t "$TRACKER_ADDR" -l 127.0.0.1:0 --cache "$cache" \
        >"$T/$name.out" 2>"$T/$name.err" &
    SEEDER_PID=$!
    OUR_PIDS+=($SEEDER_PID)
    wait_for_line "$T/$name.out" 'serving' 30 ||
        die "seeder $name did not start: $(cat "$T/$name.err")"
}

# mount_fs LOG MOUNTPOINT ARGS...: cascadefs -f in the background; waits
# (up to 10 s) for the mount; sets MOUNT_PID. Returns 1 if it never appears.
mount_fs() {
    local log=$1 mp=$2 i; shift 2
    mkdir -p "$mp"
    "$CASCADEFS" -f "$@" "$mp" 2>"$log" &
    MOUNT_PID=$!
    OUR_PIDS+=($MOUNT_PID)
    OUR_MOUNTS+=("$mp")
    for i in $(seq 100); do
        mountpoint -q "$mp" && return 0
        kill -0 "$MOUNT_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "mount on $mp did not appear: $(tail -5 "$log")"
    return 1
}

# unmount_fs MOUNTPOINT PID: fusermount3 -u, then the process must exit.
unmount_fs() {
    local mp=$1 pid=$2 i
    fusermount3 -u "$mp" || { fail "fusermount3 -u $mp"; unmount_quietly "$mp"; }
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
        sleep 0.1
    done
    fail "cascadefs ($pid) still running 10 s after unmount"
    stop_pid "$pid"
}

# xattr FILE NAME: the value of user.cascade.NAME.
xattr() {
    getfattr --only-values -n "user.cascade.$2" "$1" 2>/dev/null
}

# make_data PATH SIZE: pseudo-random content (reproducible per PATH name).
make_data() {
    python3 - "$1" "$2" <<'EOF'
import random, sys
path, size = sys.argv[1], int(sys.argv[2])
rng = random.Random(path.rsplit('/', 1)[-1])
with open(path, 'wb') as f:
    while size > 0:
        n = min(size, 1 << 20)
        f.write(rng.randbytes(n))
        size -= n
EOF
}
