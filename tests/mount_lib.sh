# Shared by it_mount.sh, it_mount_swarm.sh and contrib/bench/bench_mount.sh:
# everything in swarm_lib.sh (tracker, seeders, cleanup of what we started),
# plus mounting cascadefs in the foreground as a background job (so we know
# its pid), always unmounted on exit. Skips (exit 77) without /dev/fuse.
#
# Source it after setting CASCADE_BUILD. Programs: $CASCADE, $TRACKER,
# $CASCADEFS, $BAD_PEER.

[ -e /dev/fuse ] || { echo "SKIP: /dev/fuse is missing"; exit 77; }
command -v fusermount3 >/dev/null || { echo "SKIP: fusermount3 is not installed"; exit 77; }
CASCADEFS="${CASCADE_BUILD:?CASCADE_BUILD not set}/fs/cascadefs"
[ -x "$CASCADEFS" ] || { echo "SKIP: $CASCADEFS is not built"; exit 77; }
# shellcheck source=tests/swarm_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/swarm_lib.sh"

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
