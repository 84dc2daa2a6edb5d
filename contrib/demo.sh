#!/usr/bin/env bash
# The whole system end to end on this machine, on loopback:
#   install what is missing, build, make a data file and its .cascade,
#   start a tracker and a seeder, mount the .cascade with cascadefs (fresh
#   cache, so every byte comes over the network), read the file with
#   ordinary tools, check its SHA-256, show status, unmount.
#
# usage: contrib/demo.sh [DATAFILE]   (default: 48 MiB of generated data)
# Everything it starts it stops; everything it makes is in one temp folder.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${CASCADE_BUILD_PREFIX:-$src/build}
# shellcheck source=contrib/deps.sh
. "$src/contrib/deps.sh"
cascade_install_deps

echo "== building"
[ -d "$build/meson-info" ] || meson setup "$build" "$src" >/dev/null
ninja -C "$build" >/dev/null
cascade=$build/net/cli/cascade
tracker=$build/net/cli/cascade-tracker
cascadefs=$build/fs/cascadefs

work=$(mktemp -d /tmp/cascade-demo.XXXXXX)
mnt=$work/mnt
pids=()
cleanup() {
    if mountpoint -q "$mnt" 2>/dev/null; then fusermount3 -u "$mnt" 2>/dev/null || umount -l "$mnt"; fi
    for p in "${pids[@]+"${pids[@]}"}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]+"${pids[@]}"}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# wait_for_line FILE PATTERN: print the first line of FILE matching PATTERN,
# waiting at most 10 s for it to appear.
wait_for_line() {
    local i line
    for i in $(seq 100); do
        line=$(grep -m1 "$2" "$1" 2>/dev/null || true)
        [ -n "$line" ] && { echo "$line"; return 0; }
        sleep 0.1
    done
    echo "demo: timed out waiting for '$2' in $1:" >&2; cat "$1" >&2; return 1
}

mkdir -p "$work/seed" "$mnt"
if [ $# -ge 1 ]; then
    cp "$1" "$work/seed/$(basename "$1")"
    name=$(basename "$1")
else
    name=demo.bin
    echo "== generating 48 MiB of data"
    head -c $((48 * 1024 * 1024)) /dev/urandom > "$work/seed/$name"
fi
data=$work/seed/$name

echo "== cascade create"
"$cascade" create "$data" -b 1M -o "$data.cascade"
"$cascade" info "$data.cascade"
want=$(sha256sum "$data" | cut -d' ' -f1)

echo "== starting a tracker on loopback"
"$tracker" --listen 127.0.0.1:0 > "$work/tracker.out" 2> "$work/tracker.log" &
pids+=($!)
taddr=$(wait_for_line "$work/tracker.out" "listening on" | sed 's/.*listening on //')
echo "tracker at $taddr"

echo "== starting a seeder"
"$cascade" seed "$data.cascade" --data "$data" -t "$taddr" -l 127.0.0.1:0 \
    > "$work/seed.out" 2> "$work/seed.log" &
pids+=($!)
wait_for_line "$work/seed.out" "serving" >/dev/null

echo "== mounting with cascadefs (fresh cache)"
"$cascadefs" -f -o "tracker=$taddr,listen=127.0.0.1:0,cache=$work/cache" \
    "$data.cascade" "$mnt" 2> "$work/cascadefs.log" &
pids+=($!)
for i in $(seq 100); do [ -e "$mnt/$name" ] && break; sleep 0.1; done
ls -l "$mnt"

echo "== reading through the mount"
"$cascade" status "$mnt"
head -c 100 "$mnt/$name" | od -A d -t x1 | head -3
got=$(sha256sum "$mnt/$name" | cut -d' ' -f1)
echo "original : $want"
echo "mount    : $got"
"$cascade" status "$mnt"

echo "== unmounting"
fusermount3 -u "$mnt"
if [ "$got" = "$want" ]; then
    echo "demo: OK, the mounted file matches the original byte for byte"
else
    echo "demo: FAILED, the mounted file differs from the original" >&2
    exit 1
fi
