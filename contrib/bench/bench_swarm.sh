#!/usr/bin/env bash
# The swarm benchmark: one seeder and N peers starting empty, each on a
# simulated host whose uplink is capped, all fetching one file at once.
# Prints each peer's completion time, the bound file/uplink (the time one
# peer needs to pull the file from the seeder alone, which a whole swarm
# can match when every peer uploads as fast as the seeder), the ratio
# bound / last completion, and the seeder's share of all bytes uploaded.
#
#   contrib/bench/bench_swarm.sh [OPTIONS] [BUILD_DIR]      (as root)
#
# Options (or the environment variable in brackets):
#   -n, --peers N      peers (PEERS, 15)
#   --fill N           of them, cascadefs -o fill mounts (FILL, 0)
#   --ref N            of them, reference peers behaving like the teaching
#                      Python peer (tests/interop/ref_peer.py swarm) (REF, 0);
#                      the rest run `cascade seed`
#   --rate R           every host's uplink, as tc says it: 20mbit (RATE)
#   --size S           file size, 16M (SIZE);  --block B  block size, 256K (BLOCK)
#   --timeout S        a run gives up S seconds after the start (TIMEOUT, 300)
#   --repeat N         runs (REPEAT, 1);  --results DIR  (RESULTS, a new /tmp/cswb-results.*)
#   --mode M           swarm (MODE); four-seeder: one `cascade get` and four
#                      seeders, its throughput against the four uplinks
#                      together; or mount-cat: a cold `cat` through a mount
#                      fed by one seeder, its throughput against that uplink
# BUILD_DIR defaults to ./build (net/cli/cascade, cascade-tracker, fs/cascadefs).
# SEED_ARGS and SEEDER_ARGS add words to the peers' and the seeders'
# `cascade seed` (e.g. SEED_ARGS=-v logs every block each peer fetches and
# serves, SEEDER_ARGS='--upload-slots 2').
#
# Hosts are network namespaces named cswb-* joined by a bridge in cswb-br:
# the tracker on cswb-t (10.77.0.1; a host of its own, so its answers never
# queue behind the seeder's blocks and its bytes are not counted as the
# seeder's), the seeder on cswb-s0 (10.77.0.2), peer I on cswb-pI
# (10.77.0.(10+I)). Each host's eth0 egress is shaped with tc tbf; downlinks
# are not capped. Peers run with default options, each in its own folder;
# they start within 1 s of one common start time, after the tracker lists
# the seeder; times are taken from that start. Completion is polled every
# 0.1 s without hashing (contrib/bench/swarm_watch.py); once all are done
# every output is compared by SHA-256 and the bytes each host sent are read
# from its tbf counters (`tc -s qdisc`), not from our programs.
# Results (tables, logs, progress.dat: each peer's share of the file every
# 0.5 s, a PNG per run when gnuplot is installed) go to the results folder
# it prints. It removes what it made (namespaces, mounts,
# processes by pid, its temp folder) on exit and on Ctrl-C, and refuses to
# run while cswb-* namespaces exist. Skips (exit 0) where it may not create
# namespaces or tbf qdiscs. Targets (printed beside the figures): swarm
# ratio >= 0.6 with the seeder under half of the bytes; four-seeder >= 0.9;
# mount-cat >= 0.9.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here=$src/contrib/bench
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
bad_usage() { echo "bench_swarm.sh: $*" >&2; echo "(--help describes the options)" >&2; exit 2; }

PEERS=${PEERS:-15} FILL=${FILL:-0} REF=${REF:-0} RATE=${RATE:-20mbit} SIZE=${SIZE:-16M}
BLOCK=${BLOCK:-256K} TIMEOUT=${TIMEOUT:-300} REPEAT=${REPEAT:-1} MODE=${MODE:-swarm}
RESULTS=${RESULTS:-}
build=$src/build
while [ $# -gt 0 ]; do
    case $1 in
    -h | --help) usage; exit 0 ;;
    -n | --peers | --fill | --ref | --rate | --size | --block | --timeout | --repeat | --mode | --results)
        [ $# -ge 2 ] || bad_usage "$1 needs a value"
        case $1 in
        -n | --peers) PEERS=$2 ;; --fill) FILL=$2 ;; --ref) REF=$2 ;; --rate) RATE=$2 ;;
        --size) SIZE=$2 ;; --block) BLOCK=$2 ;; --timeout) TIMEOUT=$2 ;; --repeat) REPEAT=$2 ;;
        --mode) MODE=$2 ;; --results) RESULTS=$2 ;;
        esac
        shift 2 ;;
    -*) bad_usage "unknown option '$1'" ;;
    *) build=$1; shift ;;
    esac
done

is_count() { [[ $1 =~ ^[0-9]+$ ]] && [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }
is_count "$PEERS" 1 240 || bad_usage "peers '$PEERS': give 1 to 240"
is_count "$FILL" 0 240 || bad_usage "fill '$FILL': give a count"
is_count "$REF" 0 240 || bad_usage "ref '$REF': give a count"
[ $((FILL + REF)) -le "$PEERS" ] || bad_usage "--fill $FILL and --ref $REF are more than $PEERS peers"
is_count "$TIMEOUT" 1 86400 || bad_usage "timeout '$TIMEOUT': give whole seconds"
is_count "$REPEAT" 1 1000 || bad_usage "repeat '$REPEAT': give a count"
case $MODE in swarm | four-seeder | mount-cat) ;;
*) bad_usage "mode '$MODE': swarm, four-seeder or mount-cat" ;; esac
# tc's rate units (SI: 20mbit = 20,000,000 bit/s) -> bits per second
rate_bps=$(awk -v r="$RATE" 'BEGIN {
    if (match(r, /^[0-9]+(\.[0-9]+)?/) == 0) exit 1
    n = substr(r, 1, RLENGTH); u = tolower(substr(r, RLENGTH + 1))
    m = u == "bit" ? 1 : u == "kbit" ? 1e3 : u == "mbit" ? 1e6 : u == "gbit" ? 1e9 : 0
    if (m == 0 || n <= 0) exit 1
    printf "%d", n * m }') || bad_usage "rate '$RATE': give e.g. 20mbit, 500kbit, 1gbit"
size_bytes=$(numfmt --from=iec "$SIZE" 2>/dev/null) || bad_usage "size '$SIZE': give e.g. 16M"
numfmt --from=iec "$BLOCK" >/dev/null 2>&1 || bad_usage "block size '$BLOCK': give e.g. 256K"
[ "$size_bytes" -gt 0 ] || bad_usage "size '$SIZE': give more than 0 bytes"

# Where it may not run: skip, never fail.
[ "$(id -u)" = 0 ] || { echo "SKIP: bench_swarm.sh builds network namespaces: run it as root"; exit 0; }
for tool in ip tc python3 sha256sum; do
    command -v "$tool" >/dev/null || { echo "SKIP: $tool is missing"; exit 0; }
done
if ip netns list | grep -q '^cswb-'; then
    echo "bench_swarm.sh: network namespaces named cswb-* exist (another run, or one killed with" >&2
    echo "SIGKILL). Stop that run, or remove them:" >&2
    echo "  ip netns list | awk '/^cswb-/ {print \$1}' | xargs -rn1 ip netns del" >&2
    exit 1
fi
if ! msg=$(ip netns add cswb-probe 2>&1); then
    echo "SKIP: cannot create network namespaces here: $msg"
    exit 0
fi
if ! msg=$(tc -n cswb-probe qdisc add dev lo root tbf rate "$RATE" burst 64kb latency 200ms 2>&1); then
    ip netns del cswb-probe
    echo "SKIP: cannot shape links with tc tbf here: $msg"
    exit 0
fi
ip netns del cswb-probe

export CASCADE_BUILD=$build
# shellcheck source=tests/swarm_lib.sh
. "$src/tests/swarm_lib.sh"
CASCADEFS=$CASCADE_BUILD/fs/cascadefs
REFPEER=$src/tests/interop/ref_peer.py
WATCH=$here/swarm_watch.py
if [ "$FILL" -gt 0 ] && ! { [ -e /dev/fuse ] && command -v fusermount3 >/dev/null && [ -x "$CASCADEFS" ]; }; then
    die "--fill needs /dev/fuse, fusermount3 and $CASCADEFS; run with --fill 0"
fi

NETNS=()    # namespaces we made, the bridge's last
bench_cleanup_hosts() {
    local ns
    for ns in "${NETNS[@]+"${NETNS[@]}"}"; do ip netns del "$ns" 2>/dev/null || true; done
    NETNS=()
}
bench_cleanup() {
    set +e               # clean up all of it, whatever fails
    swarm_lib_cleanup    # our processes (by pid) and $T
    bench_cleanup_hosts
}
trap bench_cleanup EXIT
trap 'echo "interrupted: cleaning up"; exit 130' INT
trap 'exit 143' TERM

if [ -z "$RESULTS" ]; then RESULTS=$(mktemp -d /tmp/cswb-results.XXXXXX); fi
mkdir -p "$RESULTS"
now() { date +%s.%N; }
# calc FORMAT EXPR: awk's printf of one expression.
calc() { awk "BEGIN { printf \"$1\", ($2) }"; }

BR=cswb-br
TRK=10.77.0.1:8888
PORT=7000
burst=$(( rate_bps / 8 / 100 > 65536 ? rate_bps / 8 / 100 : 65536 ))  # >= 10 ms of the rate

# hosts_up NAME:IP...: a bridge host and one host per argument, each with
# its eth0 on the bridge and its egress capped at the rate.
hosts_up() {
    local spec ns ip idx=0
    ip netns add "$BR"
    NETNS=("$BR")
    ip -n "$BR" link set lo up
    ip -n "$BR" link add br0 type bridge
    ip -n "$BR" link set br0 up
    for spec in "$@"; do
        ns=${spec%%:*} ip=${spec#*:}
        ip netns add "$ns"
        NETNS=("$ns" "${NETNS[@]}")
        ip -n "$ns" link set lo up
        ip link add "b$idx" netns "$BR" type veth peer name eth0 netns "$ns"
        ip -n "$BR" link set "b$idx" master br0 up
        ip -n "$ns" addr add "$ip/24" dev eth0
        ip -n "$ns" link set eth0 up
        tc -n "$ns" qdisc add dev eth0 root tbf rate "$RATE" burst "$burst" latency 200ms
        idx=$((idx + 1))
    done
}

# Bytes host NS has sent (its tbf counter).
sent_bytes() { counters "$1" | cut -d' ' -f1; }
# counters NS: bytes sent and packets dropped by its tbf, TCP segments it
# sent and, of them, retransmitted.
counters() {
    local tcp
    # shellcheck disable=SC2016
    tcp=$(ip netns exec "$1" awk '/^Tcp:/ {
        if (!h) { h = 1; for (i = 2; i <= NF; i++) k[i] = $i; next }
        for (i = 2; i <= NF; i++) v[k[i]] = $i
        print v["OutSegs"], v["RetransSegs"] }' /proc/net/snmp)
    tc -n "$1" -s qdisc show dev eth0 | awk -v tcp="$tcp" '/Sent/ { gsub(/,/, ""); print $2, $7, tcp; exit }'
}

# stop_all: every process of this run, by pid (SIGTERM all, then wait each).
stop_all() {
    local pid
    for pid in "${OUR_PIDS[@]+"${OUR_PIDS[@]}"}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${OUR_PIDS[@]+"${OUR_PIDS[@]}"}"; do stop_pid "$pid" || true; done
    OUR_PIDS=()
}

# bg NS OUT ERR CMD...: run CMD in host NS now, in the background; sets PID.
bg() {
    local ns=$1 out=$2 err=$3; shift 3
    ip netns exec "$ns" "$@" >"$out" 2>"$err" &
    PID=$!
    OUR_PIDS+=("$PID")
}

# at_start NS DIR CMD...: like bg, but CMD starts at $T0; DIR/started gets the
# time it did, DIR/out and DIR/err its output. (ip netns exec and the bash
# here exec, so PID is the program's own.)
at_start() {
    local ns=$1 dir=$2; shift 2
    # shellcheck disable=SC2016
    bg "$ns" "$dir/out" "$dir/err" bash -c '
        d=$(awk -v t="$1" -v n="$(date +%s.%N)" "BEGIN { d = t - n; print (d > 0 ? d : 0) }")
        sleep "$d"; date +%s.%N >"$2/started"; shift 2; exec "$@"' at_start "$T0" "$dir" "$@"
}

# start_tracker_and_seeders N: the tracker and seeders s0..sN-1 (own caches,
# the original data), back once the tracker lists every seeder.
start_tracker_and_seeders() {
    local n=$1 i addrs=()
    mkdir -p "$T/h/t"
    bg cswb-t "$T/h/t/out" "$T/h/t/err" "$TRACKER" --listen "$TRK" --allow "$CASC" -q
    wait_for_line "$T/h/t/out" 'listening on' 10 || die "tracker did not start: $(cat "$T/h/t/err")"
    for ((i = 0; i < n; i++)); do
        mkdir -p "$T/h/s$i"
        # shellcheck disable=SC2086  # SEEDER_ARGS: extra words for the seeders, like SEED_ARGS
        bg "cswb-s$i" "$T/h/s$i/out" "$T/h/s$i/err" "$CASCADE" seed "$CASC" --data "$T/orig" \
            -t "$TRK" -l "10.77.0.$((2 + i)):$PORT" --cache "$T/h/s$i/cache" ${SEEDER_ARGS:-}
        addrs+=("10.77.0.$((2 + i)):$PORT")
    done
    for ((i = 0; i < n; i++)); do
        wait_for_line "$T/h/s$i/out" 'serving' 120 || die "seeder s$i did not start: $(cat "$T/h/s$i/err")"
    done
    ip netns exec cswb-t python3 "$WATCH" listed "$TRK" "$CASC" "${addrs[@]}" 60 ||
        die "the tracker never listed the seeders"
}

# kind_of I: what peer I runs (the first ones `cascade seed`, then fill, then ref).
kind_of() {
    if [ "$1" -le $((PEERS - FILL - REF)) ]; then echo seed
    elif [ "$1" -le $((PEERS - REF)) ]; then echo fill
    else echo ref; fi
}

# start_peer I KIND: peer I in its host from $T0 on; appends its line to the
# watch spec and sets OUTPUT[I] (where its copy of the file is read).
start_peer() {
    local i=$1 kind=$2 dir=$T/h/p$1 ip=10.77.0.$((10 + $1))
    mkdir -p "$dir/cache" "$dir/mnt"
    case $kind in
    seed)
        # shellcheck disable=SC2086  # SEED_ARGS: extra words, e.g. -v to trace every block
        at_start "cswb-p$i" "$dir" "$CASCADE" seed "$CASC" -t "$TRK" -l "$ip:$PORT" \
            --cache "$dir/cache" --data "$dir/data" ${SEED_ARGS:-}
        OUTPUT[i]=$dir/data ;;
    fill)
        at_start "cswb-p$i" "$dir" "$CASCADEFS" -f \
            -o "tracker=$TRK,listen=$ip:$PORT,cache=$dir/cache,fill" "$CASC" "$dir/mnt"
        OUTPUT[i]=/proc/$PID/root$dir/mnt/$NAME ;;   # the mount lives in its own mount namespace
    ref)
        at_start "cswb-p$i" "$dir" python3 "$REFPEER" swarm "$CASC" --tracker "$TRK" \
            --listen "$ip:$PORT" -o "$dir/data"
        OUTPUT[i]=$dir/data ;;
    esac
    local watched=${OUTPUT[i]}
    [ "$kind" = ref ] && watched=$dir
    echo "p$i $kind $PID $watched $size_bytes $BLOCKS" >>"$T/spec"
}

# plot RUNDIR TITLE SHARE: swarm.png from RUNDIR/peers.dat and RUNDIR/upload.dat.
plot() {
    local dir=$1 title=$2 share=$3 term=png
    if ! command -v gnuplot >/dev/null; then
        echo "plot: gnuplot is not installed (apt-get install gnuplot-nox); the figures are in $dir/*.dat"
        return 0
    fi
    gnuplot -e 'set terminal pngcairo' >/dev/null 2>&1 && term=pngcairo
    gnuplot >"$dir/gnuplot.err" 2>&1 <<EOF || { echo "plot: gnuplot failed: $(tail -3 "$dir/gnuplot.err")"; return 0; }
set terminal $term size 1400,560
set output "$dir/swarm.png"
set multiplot layout 1,2 title "$title"
set style fill solid 0.8 border -1
set boxwidth 0.8
set xtics rotate by -60 font ",8"
set grid ytics
set key off
set title "completion time per peer, s from the common start\nblue seed, green fill mount, orange ref peer, grey unfinished; dashed: bound"
set yrange [0:*]
set offsets 0.5, 0.5, graph 0.08, 0
set arrow 1 from graph 0, first $bound to graph 1, first $bound nohead dashtype 2 linewidth 2 front
color(kind) = kind eq "seed" ? 0x3366cc : kind eq "fill" ? 0x33aa55 : kind eq "ref" ? 0xee8833 : 0xcc3333
plot "$dir/peers.dat" using 0:3:(\$4 == 0 ? 0x999999 : color(strcol(2))):xtic(1) with boxes lc rgb variable
unset arrow 1
set title sprintf("MiB uploaded per host (tc counters)\nseeder (red) %s of all", "$share")
plot "$dir/upload.dat" using 0:3:(color(strcol(2))):xtic(1) with boxes lc rgb variable
unset multiplot
EOF
    echo "plot: $dir/swarm.png"
}

# ---- the runs ----

echo "preparing a $SIZE file in $BLOCK blocks ..."
NAME=swarm.bin
CASC=$T/$NAME.cascade
make_data "$T/orig" "$size_bytes"
"$CASCADE" create "$T/orig" -b "$BLOCK" -o "$CASC" -q >/dev/null
BLOCKS=$("$CASCADE" info "$CASC" | awk '/^blocks / { print $2; exit }')
WANT_SHA=$(sha256sum "$T/orig" | cut -d' ' -f1)
bound=$(calc %.2f "$size_bytes * 8 / $rate_bps")
SUMMARY=$RESULTS/summary.txt
declare -A BASE UP    # per host (s0, pI): counters at the start; bytes sent since

# swarm_launch RUNDIR: hosts, tracker, seeder, then every peer from $T0 on;
# BASE holds each host's counters from before the start.
swarm_launch() {
    local i hosts=(cswb-t:10.77.0.1 cswb-s0:10.77.0.2)
    rm -rf "$T/h" "$T/spec"
    for ((i = 1; i <= PEERS; i++)); do hosts+=("cswb-p$i:10.77.0.$((10 + i))"); done
    hosts_up "${hosts[@]}"
    start_tracker_and_seeders 1
    BASE=([s0]="$(counters cswb-s0)")
    for ((i = 1; i <= PEERS; i++)); do BASE[p$i]=$(counters "cswb-p$i"); done
    T0=$(calc %.3f "$(now) + 2 + 0.1 * $PEERS")
    OUTPUT=() KIND=()
    for ((i = 1; i <= PEERS; i++)); do
        KIND[i]=$(kind_of "$i")
        start_peer "$i" "${KIND[i]}"
    done
}

# swarm_uploads RUNDIR: what each host sent since the start (UP, in bytes),
# the totals, and RUNDIR/upload.dat.
swarm_uploads() {
    local h kind b d o r b0 d0 o0 r0
    UP=() UP_TOTAL=0 DROPS=0 SEGS=0 RESENT=0
    : >"$1/upload.dat"
    for h in s0 $(seq -f 'p%g' 1 "$PEERS"); do
        read -r b d o r <<<"$(counters "cswb-$h")"
        read -r b0 d0 o0 r0 <<<"${BASE[$h]}"
        UP[$h]=$((b - b0))
        UP_TOTAL=$((UP_TOTAL + b - b0)) DROPS=$((DROPS + d - d0))
        SEGS=$((SEGS + o - o0)) RESENT=$((RESENT + r - r0))
        kind=seeder
        [ "$h" = s0 ] || kind=${KIND[${h#p}]}
        printf '%s %s %.2f\n' "${h/s0/seeder}" "$kind" "$(calc %f "$((b - b0)) / 1048576")" >>"$1/upload.dat"
    done
}

# swarm_peers RUNDIR: the table, one row per peer, each finished output
# hashed; sets FIRST, LAST, UNFINISHED, BAD, SKEW; writes RUNDIR/peers.dat.
swarm_peers() {
    local i name what why secs start sha out
    declare -A finished    # name -> seconds, or why not
    while read -r name what why; do
        if [ "$what" = "done" ]; then finished[$name]=$why; else finished[$name]="$what: $why"; fi
    done <"$1/watch.txt"
    FIRST=1e9 LAST=0 UNFINISHED=() BAD=0 SKEW=0
    : >"$1/peers.dat"
    printf '\n%-5s %-6s %8s %8s %9s  %s\n' peer kind start_ms done_s sent_MiB output
    for ((i = 1; i <= PEERS; i++)); do
        start=$(cat "$T/h/p$i/started" 2>/dev/null || echo "$T0")
        start=$(calc %.0f "($start - $T0) * 1000")
        [ "${start#-}" -le "$SKEW" ] || SKEW=${start#-}
        secs=${finished[p$i]:-unfinished}
        if [[ $secs =~ ^[0-9.]+$ ]]; then
            sha=$(timeout 120 sha256sum "${OUTPUT[i]}" 2>/dev/null | cut -d' ' -f1) || true
            out=identical
            [ "$sha" = "$WANT_SHA" ] || { out=DIFFERS; BAD=$((BAD + 1)); }
            FIRST=$(calc %.2f "$secs < $FIRST ? $secs : $FIRST")
            LAST=$(calc %.2f "$secs > $LAST ? $secs : $LAST")
            echo "p$i ${KIND[i]} $secs 1" >>"$1/peers.dat"
        else
            out=$secs secs=-
            UNFINISHED+=("p$i")
            echo "p$i ${KIND[i]} $TIMEOUT 0" >>"$1/peers.dat"
        fi
        printf '%-5s %-6s %8s %8s %9.2f  %s\n' "p$i" "${KIND[i]}" "$start" "$secs" \
            "$(calc %f "${UP[p$i]} / 1048576")" "$out"
    done
    printf '%-5s %-6s %8s %8s %9.2f\n' s0 seeder - - "$(calc %f "${UP[s0]} / 1048576")"
    [ "$FIRST" != 1e9 ] || FIRST=-
}

# swarm_report RUN LABEL RUNDIR: the summary lines, summary.txt, the plot.
swarm_report() {
    local ratio verdict share last=$LAST n_ok=$((PEERS - ${#UNFINISHED[@]} - BAD))
    share=$(calc %.0f%% "100 * ${UP[s0]} / ($UP_TOTAL > 0 ? $UP_TOTAL : 1)")
    if [ ${#UNFINISHED[@]} -eq 0 ]; then
        ratio=$(calc %.2f "$bound / ($LAST > 0 ? $LAST : 0.001)")
        verdict=$(calc %s "$ratio >= 0.6 ? \"met\" : \"NOT met\"")
    else
        last=">$TIMEOUT"
        ratio="<$(calc %.2f "$bound / $TIMEOUT")"
        verdict="NOT met: ${UNFINISHED[*]} did not finish within $TIMEOUT s"
    fi
    echo
    echo "bound: file / uplink = $size_bytes B * 8 / $rate_bps bit/s = $bound s"
    echo "first completion $FIRST s, last $last s; ratio bound/last = $ratio (target >= 0.6: $verdict)"
    echo "seeder sent $share of the $(calc %.1f "$UP_TOTAL / 1048576") MiB all hosts sent (target: well under 50%)"
    echo "all hosts sent $(calc %.2f "$UP_TOTAL / ($PEERS * $size_bytes)") x the bytes the peers needed;" \
         "tbf dropped $DROPS packets; TCP retransmitted $RESENT of $SEGS segments"
    echo "outputs: $n_ok identical, $BAD differ, ${#UNFINISHED[@]} unfinished;" \
         "every peer started within $SKEW ms of the common start (target < 1000 ms)"
    printf 'run%-3s %-26s first %6s  last %7s  bound %5s  ratio %-5s  seeder %4s  identical %d/%d  skew %d ms\n' \
        "$1" "$2" "$FIRST" "$last" "$bound" "$ratio" "$share" "$n_ok" "$PEERS" "$SKEW" >>"$SUMMARY"
    plot "$3" "$2, $SIZE in $BLOCK blocks, uplinks $RATE: last $last s, bound $bound s, ratio $ratio" "$share"
    echo "logs and figures: $3"
}

run_swarm() {
    local run=$1 label="${PEERS}peers-$((PEERS - FILL - REF))seed-${FILL}fill-${REF}ref" watcher i
    local rundir=$RESULTS/run$run-$label
    mkdir -p "$rundir"
    swarm_launch
    echo "run $run: $PEERS peers ($((PEERS - FILL - REF)) cascade seed, $FILL fill mounts, $REF reference)," \
         "1 seeder, $SIZE in $BLOCK blocks, uplinks $RATE; waiting at most $TIMEOUT s ..."
    python3 "$WATCH" peers "$T0" "$(calc %.3f "$T0 + $TIMEOUT")" "$T/spec" "$rundir/progress.dat" >"$rundir/watch.txt" &
    watcher=$!
    OUR_PIDS+=("$watcher")
    wait "$watcher" || die "the watcher failed"
    # counters and hashes while everything still runs (a mount's file is
    # read through the mount)
    swarm_uploads "$rundir"
    swarm_peers "$rundir"
    stop_all    # then the logs, with what the programs said as they stopped
    cp "$T/h/s0/err" "$rundir/seeder.log"
    for ((i = 1; i <= PEERS; i++)); do cp "$T/h/p$i/err" "$rundir/p$i.log" 2>/dev/null || true; done
    bench_cleanup_hosts
    swarm_report "$run" "$label" "$rundir"
}

run_four_seeder() {
    local run=$1 i dir=$T/h/p1 t1 secs mbit ratio sha line=
    local rundir=$RESULTS/run$run-four-seeder
    mkdir -p "$rundir"
    rm -rf "$T/h"
    hosts_up cswb-t:10.77.0.1 cswb-s0:10.77.0.2 cswb-s1:10.77.0.3 cswb-s2:10.77.0.4 \
        cswb-s3:10.77.0.5 cswb-p1:10.77.0.11
    start_tracker_and_seeders 4
    declare -A base
    for i in 0 1 2 3; do base[$i]=$(sent_bytes "cswb-s$i"); done
    mkdir -p "$dir"
    T0=$(calc %.3f "$(now) + 1")
    echo "run $run: four-seeder: one cascade get, four seeders, $SIZE in $BLOCK blocks, uplinks $RATE"
    at_start cswb-p1 "$dir" timeout "$TIMEOUT" "$CASCADE" get "$CASC" -t "$TRK" -o "$dir/data" \
        --cache "$dir/cache" -q
    if wait "$PID"; then
        t1=$(now)
        secs=$(calc %.2f "$t1 - $T0")
        mbit=$(calc %.1f "$size_bytes * 8 / ($t1 - $T0) / 1e6")
        ratio=$(calc %.2f "$size_bytes * 8 / ($t1 - $T0) / (4 * $rate_bps)")
        sha=$(sha256sum "$dir/data" | cut -d' ' -f1)
        echo "get took $secs s: $mbit Mbit/s of four uplinks' $(calc %.0f "4 * $rate_bps / 1e6") Mbit/s" \
             "= $ratio (target >= 0.9: $(calc %s "$ratio >= 0.9 ? \"met\" : \"NOT met\""));" \
             "output $([ "$sha" = "$WANT_SHA" ] && echo identical || echo DIFFERS)"
    else
        ratio=failed
        echo "get failed or timed out: $(tail -3 "$dir/err")"
    fi
    for i in 0 1 2 3; do
        line+=" s$i $(calc %.1f "($(sent_bytes "cswb-s$i") - ${base[$i]}) / 1048576")"
    done
    echo "MiB sent per seeder:$line"
    stop_all
    cp "$dir/err" "$rundir/get.log"
    bench_cleanup_hosts
    printf 'run%-3s %-30s %s s  ratio %s  sent:%s\n' "$run" four-seeder "${secs:--}" "$ratio" "$line" >>"$SUMMARY"
}

# A cold `cat` through a mount on p1 fed by one seeder over its capped
# uplink: the throughput the mount's read-ahead reaches against the link.
run_mount_cat() {
    local run=$1 dir=$T/h/p1 t0 t1 secs mbit ratio sha file
    local rundir=$RESULTS/run$run-mount-cat
    mkdir -p "$rundir"
    rm -rf "$T/h"
    hosts_up cswb-t:10.77.0.1 cswb-s0:10.77.0.2 cswb-p1:10.77.0.11
    start_tracker_and_seeders 1
    mkdir -p "$dir/cache" "$dir/mnt"
    echo "run $run: mount-cat: cat through a mount fed by one seeder, $SIZE in $BLOCK blocks, uplink $RATE"
    bg cswb-p1 "$dir/out" "$dir/err" "$CASCADEFS" -f \
        -o "tracker=$TRK,listen=10.77.0.11:$PORT,cache=$dir/cache" "$CASC" "$dir/mnt"
    file=/proc/$PID/root$dir/mnt/$NAME   # the mount lives in its own mount namespace
    for _ in $(seq 100); do [ -e "$file" ] && break; sleep 0.1; done
    t0=$(now)
    if timeout "$TIMEOUT" cat "$file" >"$dir/copy" 2>"$dir/cat.err"; then
        t1=$(now)
        secs=$(calc %.2f "$t1 - $t0")
        mbit=$(calc %.1f "$size_bytes * 8 / ($t1 - $t0) / 1e6")
        ratio=$(calc %.2f "$size_bytes * 8 / ($t1 - $t0) / $rate_bps")
        sha=$(sha256sum "$dir/copy" | cut -d' ' -f1)
        echo "cat took $secs s: $mbit Mbit/s of the uplink's $(calc %.0f "$rate_bps / 1e6") Mbit/s" \
             "= $ratio (target >= 0.9: $(calc %s "$ratio >= 0.9 ? \"met\" : \"NOT met\""));" \
             "output $([ "$sha" = "$WANT_SHA" ] && echo identical || echo DIFFERS)"
    else
        ratio=failed
        echo "cat failed or timed out: $(tail -3 "$dir/cat.err") $(tail -3 "$dir/err")"
    fi
    stop_all
    cp "$dir/err" "$rundir/mount.log"
    bench_cleanup_hosts
    printf 'run%-3s %-30s %s s  ratio %s\n' "$run" mount-cat "${secs:--}" "$ratio" >>"$SUMMARY"
}

for ((r = 1; r <= REPEAT; r++)); do
    echo
    case $MODE in
    swarm) run_swarm "$r" ;;
    four-seeder) run_four_seeder "$r" ;;
    mount-cat) run_mount_cat "$r" ;;
    esac
done
echo
echo "== summary ($SUMMARY)"
cat "$SUMMARY"
