#!/usr/bin/env bash
# Bad input never hangs or refuses a whole folder mount: a folder holding a
# FIFO named x.cascade, a malformed and a truncated .cascade file, a folder
# named x.cascade, a copy of a good file (same cascade hash), files that
# would show as '.' and '..', and a name found in two folders mounts quickly
# and shows the good files (byte for byte), with one warning per skipped
# file. Named bad files and folders without a good file still refuse the
# mount (exit 2), and so does -o data= naming a FIFO. A second cascadefs on a cascadefs mount point is refused
# (exit 2, the first mount keeps working) unless -o stack.
set -u
. "${CASCADE_SRC:?CASCADE_SRC not set}/tests/mount_lib.sh"

SRC=$T/src MORE=$T/more
mkdir -p "$SRC" "$MORE" "$T/dots" "$T/allbad"

# ---- the folders ----
make_data "$SRC/alpha" 300000
make_data "$SRC/beta" 70001
make_data "$MORE/alpha" 5000        # same name as $SRC/alpha, other content
make_data "$MORE/gamma" 4000
make_data "$T/dots/dot" 3000
"$CASCADE" create "$SRC/alpha" -b 4K -q >/dev/null || die "create alpha"
"$CASCADE" create "$SRC/beta" -b 1K -q >/dev/null || die "create beta"
for f in "$MORE/alpha" "$MORE/gamma" "$T/dots/dot"; do
    "$CASCADE" create "$f" -b 1K -q >/dev/null || die "create $f"
done
mkfifo "$SRC/fifo.cascade"
head -c 200 /dev/zero | tr '\0' 'x' >"$SRC/junk.cascade"          # bad magic
head -c 40 "$SRC/alpha.cascade" >"$SRC/short.cascade"            # truncated header
cp "$SRC/alpha.cascade" "$SRC/copy.cascade"                      # alpha's cascade hash
cp "$T/dots/dot.cascade" "$SRC/..cascade"                        # would show as '.'
make_data "$T/dots/dot2" 2000
"$CASCADE" create "$T/dots/dot2" -b 1K -q -o "$SRC/...cascade" >/dev/null ||
    die "create ...cascade"                                       # would show as '..'
mkdir "$SRC/sub.cascade"

start_tracker
start_seeder seeder "$T/seedcache" "$SRC/alpha.cascade" "$SRC/beta.cascade"
OPTS="tracker=$TRACKER_ADDR,listen=127.0.0.1:0"
M="$T/mount point"   # a space: mountinfo escapes it as \040

# ---- a folder with bad files mounts (within mount_fs's bounded wait) ----
mount_fs "$T/m1.log" "$M" -o "$OPTS,cache=$T/cache1" "$SRC" "$MORE" ||
    die "the folders did not mount: $(cat "$T/m1.log")"
FIRST_PID=$MOUNT_PID
ok "a folder holding a FIFO and bad files mounts"
listing=$(cd "$M" && ls -a | tr '\n' ' ')
[ "$listing" = ". .. alpha beta gamma " ] && ok "only the good files are shown" ||
    fail "listing: '$listing'"
cmp -s "$M/alpha" "$SRC/alpha" && cmp -s "$M/beta" "$SRC/beta" &&
    ok "alpha and beta read byte for byte" || fail "alpha or beta differs"
[ "$(stat -c %s "$M/gamma")" = 4000 ] && ok "gamma from the second folder" ||
    fail "gamma: $(stat -c %s "$M/gamma" 2>&1)"

# One warning per skipped file, naming it and why.
expect_warning() {   # expect_warning TEXT
    grep 'warning: ' "$T/m1.log" | grep -qF -- "$1" || fail "no warning '$1' in the log"
}
expect_warning "$SRC/fifo.cascade is a FIFO, not a regular file; skipped"
expect_warning "$SRC/junk.cascade: bad magic"
expect_warning "$SRC/short.cascade: truncated header"
expect_warning "$SRC/sub.cascade is a directory, not a regular file; skipped"
expect_warning "$SRC/alpha.cascade and $SRC/copy.cascade describe the same file"
expect_warning "skipped $SRC/copy.cascade"
expect_warning "$SRC/..cascade would show as '.', which cannot be a file name; skipped"
expect_warning "$SRC/...cascade would show as '..', which cannot be a file name; skipped"
expect_warning "$SRC/alpha.cascade and $MORE/alpha.cascade would both show as 'alpha'"
expect_warning "'alpha'; skipped $MORE/alpha.cascade"
n=$(grep -c 'warning: ' "$T/m1.log")
[ "$n" = 8 ] && ok "one warning per skipped file" || fail "$n warnings, want 8: $(cat "$T/m1.log")"

# ---- a second cascadefs on the same mount point is refused ----
timeout -s KILL 30 "$CASCADEFS" -f -o "$OPTS,cache=$T/cache2" "$SRC/beta.cascade" "$M" \
    2>"$T/stack.err"
rc=$?
[ $rc = 137 ] && OUR_MOUNTS+=("$M")   # it mounted and stayed: unmount it at exit
want="$M already holds a cascadefs mount; unmount it first (fusermount3 -u $M) or add -o stack"
[ $rc = 2 ] && grep -qF "$want" "$T/stack.err" && ok "a stacked mount is refused (exit 2)" ||
    fail "stacked mount: exit $rc: $(cat "$T/stack.err")"
"$CASCADEFS" -o "$OPTS,cache=$T/cache2" "$SRC/beta.cascade" "$M" 2>"$T/stack.err"
rc=$?
[ $rc = 2 ] && grep -qF "already holds a cascadefs mount" "$T/stack.err" &&
    ok "a stacked mount is refused in the background too" ||
    { fail "stacked background mount: exit $rc: $(cat "$T/stack.err")"; fusermount3 -u "$M"; }
listing=$(cd "$M" && ls | tr '\n' ' ')
kill -0 "$FIRST_PID" 2>/dev/null && [ "$listing" = "alpha beta gamma " ] &&
    cmp -s "$M/beta" "$SRC/beta" && ok "the first mount still works" ||
    fail "the first mount after a refused one: '$listing'"

"$CASCADEFS" --help 2>/dev/null | grep -q -- '-o stack  ' && ok "--help lists -o stack" ||
    fail "--help does not list -o stack"

# ---- -o stack mounts on top; unmounting it shows the first again ----
"$CASCADEFS" -f -o "$OPTS,cache=$T/cache2,stack" "$SRC/beta.cascade" "$M" 2>"$T/m2.log" &
STACK_PID=$!
OUR_PIDS+=($STACK_PID)
for i in $(seq 100); do
    [ "$(cd "$M" && ls | tr '\n' ' ')" = "beta " ] && break
    kill -0 "$STACK_PID" 2>/dev/null || break
    sleep 0.1
done
[ "$(cd "$M" && ls | tr '\n' ' ')" = "beta " ] && cmp -s "$M/beta" "$SRC/beta" &&
    ok "-o stack mounts on top" || fail "-o stack: $(cat "$T/m2.log")"
unmount_fs "$M" "$STACK_PID"
listing=$(cd "$M" && ls | tr '\n' ' ')
[ "$listing" = "alpha beta gamma " ] && ok "the first mount shows again" ||
    fail "after unmounting the stacked one: '$listing'"
unmount_fs "$M" "$FIRST_PID"

# ---- in the background (the default) the warnings reach the terminal ----
"$CASCADEFS" -o "$OPTS,cache=$T/cache1" "$SRC" "$M" 2>"$T/bg.err"
rc=$?
if [ $rc = 0 ] && mountpoint -q "$M"; then
    OUR_MOUNTS+=("$M")
    pid=$(pgrep -nf "^$CASCADEFS -o $OPTS,cache=$T/cache1 $SRC ")
    grep -qF "$SRC/fifo.cascade is a FIFO, not a regular file; skipped" "$T/bg.err" &&
        ok "a background mount prints its warnings" || fail "background warnings: $(cat "$T/bg.err")"
    if [ -n "$pid" ]; then unmount_fs "$M" "$pid"; else fail "no pid for the background mount"; fi
else
    fail "background mount: exit $rc: $(cat "$T/bg.err")"
fi

# ---- what still refuses a mount (exit 2) ----
refused() {   # refused NAME TEXT SOURCES...
    local name=$1 text=$2; shift 2
    timeout -s KILL 30 "$CASCADEFS" -f -o "$OPTS,cache=$T/cache3" "$@" "$M" 2>"$T/err"
    local rc=$?
    [ $rc = 137 ] && OUR_MOUNTS+=("$M")
    [ $rc = 2 ] && grep -qF -- "$text" "$T/err" && ok "$name: exit 2" ||
        fail "$name: exit $rc: $(cat "$T/err")"
}
refused "a named FIFO" "$SRC/fifo.cascade is a FIFO, not a regular file" "$SRC/fifo.cascade"
refused "a named bad file" "bad magic" "$SRC/junk.cascade"
mkfifo "$T/data.fifo"
refused "-o data= a FIFO" "data=$T/data.fifo is a FIFO, not a regular file" \
    -o "data=$T/data.fifo" "$SRC/beta.cascade"
refused "a named '.'" "would show as '.'" "$SRC/..cascade"
refused "two named files, one name" "would both show as 'alpha'" \
    "$SRC/alpha.cascade" "$MORE/alpha.cascade"
refused "a file named twice" "describe the same file" "$SRC/beta.cascade" "$SRC/beta.cascade"
mkfifo "$T/allbad/f.cascade"
cp "$SRC/junk.cascade" "$T/allbad/"
refused "a folder of bad files" "none of the 2 .cascade files in folder $T/allbad can be mounted" \
    "$T/allbad"
grep -qF "$T/allbad/f.cascade is a FIFO" "$T/err" && ok "... with a warning for each" ||
    fail "no warning for the FIFO: $(cat "$T/err")"
mkdir "$T/empty"
refused "an empty folder" "folder $T/empty holds no .cascade files" "$T/empty"

if [ "$failures" -ne 0 ]; then
    echo "$failures failure(s)"
    exit 1
fi
echo "all passed"
