#!/usr/bin/env bash
# Interop with an independent implementation of the protocol
# (tests/interop/: a reference tracker and a one-connection-per-block peer,
# written from PROTOCOL.md like the teaching programs), both directions, at
# block sizes 1 KiB to 10 MiB and the empty file:
#   a. our `cascade seed` + reference tracker -> reference download
#   b. reference serve + our cascade-tracker  -> our `cascade get`
#   c. a cascadefs mount fetching from a reference peer, then serving a
#      reference download (skipped without /dev/fuse)
#   d. reference peers in swarm mode (the teaching peer's way) beside our
#      seeder and peer, then serving `cascade get` alone
set -u
command -v python3 >/dev/null || { echo "SKIP: python3 is missing"; exit 77; }
# shellcheck source=tests/swarm_lib.sh
. "${CASCADE_SRC:?CASCADE_SRC not set}/tests/swarm_lib.sh"
CASCADEFS=$CASCADE_BUILD/fs/cascadefs
REF=$CASCADE_SRC/tests/interop
MNT=$T/mnt

# start NAME PATTERN CMD...: run CMD in the background with stdout in
# $T/NAME.out; wait (10 s at most) for a line matching PATTERN and set
# ADDR to the IP:PORT on it. (Not in $(...): the pid must reach OUR_PIDS.)
start() {
    local name=$1 pattern=$2; shift 2
    "$@" > "$T/$name.out" 2> "$T/$name.err" &
    OUR_PIDS+=($!)
    wait_for_line "$T/$name.out" "$pattern" 10
    ADDR=$(sed -n "s/.*$pattern \([0-9.]*:[0-9]*\).*/\1/p" "$T/$name.out" | head -1)
}

mkdir -p "$T/data" "$MNT"
sizes=("1K:3000000" "64K:3000000" "1M:5000000" "10M:25000000" "1K:0")
for spec in "${sizes[@]}"; do
    bs=${spec%%:*} size=${spec#*:}
    name=f_${bs}_$size
    head -c "$size" /dev/urandom > "$T/data/$name"
    "$CASCADE" create "$T/data/$name" -b "$bs" -q > /dev/null
    casc=$T/data/$name.cascade

    # a. our seeder, their tracker and downloader
    start "rt_$name" "listening on" python3 "$REF/ref_tracker.py" --allow "$casc"
    rt=$ADDR
    start "seed_$name" "serving" "$CASCADE" seed "$casc" -t "$rt" -l 127.0.0.1:0 \
        --cache "$T/seedcache"
    if timeout 120 python3 "$REF/ref_peer.py" download "$casc" --tracker "$rt" \
           -o "$T/a_$name" 2> "$T/a_$name.err" && cmp -s "$T/a_$name" "$T/data/$name"; then
        ok "reference peer downloads from our seeder ($bs blocks, $size bytes)"
    else
        fail "reference download from our seeder ($bs, $size): $(cat "$T/a_$name.err")"
    fi

    # b. their peer, our tracker and `cascade get`
    start "ot_$name" "listening on" "$TRACKER" --listen 127.0.0.1:0
    ot=$ADDR
    start "ref_$name" "serving on" python3 "$REF/ref_peer.py" serve "$casc" \
        --data "$T/data/$name" --tracker "$ot"
    if timeout 120 "$CASCADE" get "$casc" -o "$T/b_$name" -t "$ot" --cache "$T/getcache" -q \
           2> "$T/b_$name.err" && cmp -s "$T/b_$name" "$T/data/$name"; then
        ok "cascade get downloads from the reference peer ($bs blocks, $size bytes)"
    else
        fail "cascade get from the reference peer ($bs, $size): $(cat "$T/b_$name.err")"
    fi
done

# c. a mount between reference peers: it fetches from one, then serves the next.
if [ -e /dev/fuse ] && command -v fusermount3 > /dev/null && [ -x "$CASCADEFS" ]; then
    name=f_1M_5000000
    casc=$T/data/$name.cascade
    start rt_mount "listening on" python3 "$REF/ref_tracker.py" --allow "$casc"
    rt=$ADDR
    start ref_mount "serving on" python3 "$REF/ref_peer.py" serve "$casc" \
        --data "$T/data/$name" --tracker "$rt"
    refpid=${OUR_PIDS[-1]}
    "$CASCADEFS" -f -o "tracker=$rt,listen=127.0.0.1:0,cache=$T/mountcache" "$casc" "$MNT" \
        2> "$T/mount.err" &
    OUR_PIDS+=($!)
    OUR_MOUNTS+=("$MNT")
    for _ in $(seq 100); do [ -e "$MNT/$name" ] && break; sleep 0.1; done
    if timeout 120 cmp -s "$MNT/$name" "$T/data/$name"; then
        ok "a mount reads everything from the reference peer"
    else
        fail "mount reading from the reference peer: $(tail -5 "$T/mount.err")"
    fi
    kill "$refpid"
    wait "$refpid" 2> /dev/null
    if timeout 120 python3 "$REF/ref_peer.py" download "$casc" --tracker "$rt" \
           -o "$T/c_$name" 2> "$T/c.err" && cmp -s "$T/c_$name" "$T/data/$name"; then
        ok "the reference peer downloads from the mount alone"
    else
        fail "reference download from the mount: $(cat "$T/c.err")"
    fi
    fusermount3 -u "$MNT"
else
    echo "skip: mount interop (no /dev/fuse, fusermount3 or cascadefs)"
fi

# d. a swarm: two reference peers behaving like the teaching peer (starting
#    empty, serving while they fetch) beside our seeder and an empty
#    `cascade seed`; then, ours stopped, `cascade get` from them alone.
name=f_64K_3000000
casc=$T/data/$name.cascade
start ot_swarm "listening on" "$TRACKER" --listen 127.0.0.1:0
ot=$ADDR
start seed_swarm "serving" "$CASCADE" seed "$casc" -t "$ot" -l 127.0.0.1:0 --cache "$T/swarmseed"
ours=("${OUR_PIDS[-1]}")
# the reference peers list the tracker once at start: let it know the seeder
python3 -c "import sys; sys.path.insert(0, sys.argv[1]); from cascade_ref import Meta, wait_listed;
sys.exit(not wait_listed(sys.argv[2], Meta(sys.argv[3]), [], 30))" "$REF" "$ot" "$casc" ||
    fail "our tracker never listed our seeder"
start leech_swarm "serving" "$CASCADE" seed "$casc" -t "$ot" -l 127.0.0.1:0 \
    --cache "$T/swarmleech" --data "$T/d_leech"
ours+=("${OUR_PIDS[-1]}")
for i in 1 2; do
    start "ref_swarm$i" "serving on" python3 "$REF/ref_peer.py" swarm "$casc" --tracker "$ot" \
        -o "$T/d_ref$i"
done
for i in 1 2; do
    if wait_for_line "$T/ref_swarm$i.out" '^done ' 120 && cmp -s "$T/d_ref$i" "$T/data/$name"; then
        ok "reference swarm peer $i completes beside our seeder and peer"
    else
        fail "reference swarm peer $i: $(tail -3 "$T/ref_swarm$i.err")"
    fi
done
if wait_for_line "$T/leech_swarm.err" 'complete' 120 && cmp -s "$T/d_leech" "$T/data/$name"; then
    ok "our cascade seed completes beside reference swarm peers"
else
    fail "our cascade seed beside reference swarm peers: $(tail -3 "$T/leech_swarm.err")"
fi
for pid in "${ours[@]}"; do stop_pid "$pid"; done
if timeout 120 "$CASCADE" get "$casc" -o "$T/d_get" -t "$ot" --cache "$T/swarmget" -q \
       2> "$T/d_get.err" && cmp -s "$T/d_get" "$T/data/$name"; then
    ok "cascade get downloads from the reference swarm peers alone"
else
    fail "cascade get from the reference swarm peers: $(cat "$T/d_get.err")"
fi

[ "$failures" -eq 0 ] && echo "all interop checks passed"
exit $((failures > 0))
