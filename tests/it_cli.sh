#!/usr/bin/env bash
# Integration test for `cascade create`, `cascade info` and `cascade verify`:
# real runs of the program, checking output files, messages and exit codes.
set -u

CASCADE="${CASCADE_BUILD:?CASCADE_BUILD not set}/net/cli/cascade"
V="${CASCADE_VECTORS:?CASCADE_VECTORS not set}"
[ -x "$CASCADE" ] || { echo "SKIP: $CASCADE not built"; exit 77; }

T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT

failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }

# run EXPECTED_RC NAME CMD... : runs CMD with stdout/stderr in $T/out, $T/err.
run() {
    local want=$1 name=$2; shift 2
    "$@" >"$T/out" 2>"$T/err" </dev/null
    local rc=$?
    if [ "$rc" -ne "$want" ]; then
        fail "$name: exit $rc, want $want"
        sed 's/^/    stdout: /' "$T/out"; sed 's/^/    stderr: /' "$T/err"
        return 1
    fi
    ok "$name"
}
expect_in() {   # expect_in FILE TEXT NAME
    grep -qF -- "$2" "$1" || { fail "$3: '$2' not in $(basename "$1"): $(head -c 400 "$1")"; return 1; }
}
manifest_field() {   # manifest_field VECTOR FIELD
    sed -n "s/^$1 .*$2=\([^ ]*\).*/\1/p" "$V/MANIFEST"
}

# ---- create reproduces the vectors byte for byte ----
for spec in spec1000.bin:64 even4096.bin:1024 oneblock.bin:1M empty.bin:1KiB; do
    name=${spec%%:*}; bs=${spec#*:}
    cp "$V/$name" "$T/$name"
    run 0 "create $name -b $bs" "$CASCADE" create "$T/$name" -b "$bs" -q &&
        { cmp -s "$T/$name.cascade" "$V/$name.cascade" || fail "create $name: differs from vector"; }
    expect_in "$T/out" "$T/$name.cascade" "create $name prints the path"
    expect_in "$T/out" "$(manifest_field "$name.cascade" cascadehash)" "create $name prints the hash"
    [ -s "$T/err" ] && fail "create $name -q wrote to stderr: $(cat "$T/err")"
done

# -o, refusing to overwrite, -f
run 0 "create -o" "$CASCADE" create "$V/spec1000.bin" -b 64 -o "$T/other.cascade" &&
    { cmp -s "$T/other.cascade" "$V/spec1000.bin.cascade" || fail "create -o: output differs"; }
run 2 "create refuses to overwrite" "$CASCADE" create "$T/spec1000.bin" -b 64 &&
    expect_in "$T/err" "already exists" "overwrite message"
expect_in "$T/err" "cascade create: " "error prefix"
cp "$T/spec1000.bin.cascade" "$T/keep"
run 0 "create -f overwrites" "$CASCADE" create "$T/spec1000.bin" --block-size 1K --force -q
cmp -s "$T/keep" "$T/spec1000.bin.cascade" && fail "create -f did not rewrite the file"
ls "$T" | grep -q '\.tmp\.' && fail "create left a temporary file: $(ls "$T")"

# bad usage and bad input
run 2 "create -b 0" "$CASCADE" create "$T/spec1000.bin" -b 0 -o "$T/x.cascade" &&
    expect_in "$T/err" "bad block size" "-b 0 message"
run 2 "create -b junk" "$CASCADE" create "$T/spec1000.bin" -b 12Q -o "$T/x.cascade"
run 2 "create missing data" "$CASCADE" create "$T/absent.bin" &&
    expect_in "$T/err" "absent.bin" "missing data message names the file"
run 2 "create no arguments" "$CASCADE" create
run 2 "create unknown option" "$CASCADE" create --bogus "$T/spec1000.bin"
[ -e "$T/x.cascade" ] && fail "a refused create wrote output"
run 1 "create into a missing directory" "$CASCADE" create "$T/spec1000.bin" -o "$T/no/dir/x.cascade"

# ---- info ----
for bad in "$V"/bad-*.cascade; do
    b=$(basename "$bad")
    run 2 "info $b" "$CASCADE" info "$bad"
    expect_in "$T/err" "cascade info: " "info $b prefix"
done
check_msg() {   # check_msg VECTOR TEXT
    "$CASCADE" info "$V/$1" >/dev/null 2>"$T/err"
    expect_in "$T/err" "$2" "info $1 message"
}
check_msg bad-truncated-header.cascade "file is 40 bytes, a .cascade header is 64"
check_msg bad-empty-file.cascade "file is 0 bytes"
check_msg bad-zero-blocksize.cascade "block size is 0"
check_msg bad-missing-hash.cascade "holds 15 of 16 block hashes"
check_msg bad-extra-bytes.cascade "trailing 32 bytes after the 16 block hashes"
check_msg bad-partial-hash.cascade "partial hash: 25 bytes"
check_msg bad-huge-size.cascade "18446744073709551615"
check_msg bad-magic.cascade "bad magic"

for c in spec1000.bin.cascade even4096.bin.cascade oneblock.bin.cascade empty.bin.cascade; do
    run 0 "info $c" "$CASCADE" info "$V/$c"
    expect_in "$T/out" "$(manifest_field "$c" cascadehash)" "info $c cascade hash"
    expect_in "$T/out" "$(manifest_field "$c" targethash)" "info $c target hash"
    expect_in "$T/out" "${c%.cascade}" "info $c name"
done
run 0 "info spec1000 --blocks" "$CASCADE" info --blocks "$V/spec1000.bin.cascade"
[ "$(grep -c '^block [0-9]' "$T/out")" -eq 16 ] || fail "info --blocks: want 16 block lines"
expect_in "$T/out" "last block     40" "info last block size"
run 2 "info missing file" "$CASCADE" info "$T/absent.cascade" &&
    expect_in "$T/err" "No such file" "info missing file message"
run 2 "info no arguments" "$CASCADE" info

# ---- verify ----
run 0 "verify good" "$CASCADE" verify "$V/spec1000.bin.cascade" "$V/spec1000.bin"
run 0 "verify empty" "$CASCADE" verify "$V/empty.bin.cascade" "$V/empty.bin"
cp "$V/spec1000.bin" "$T/corrupt"
printf 'X' | dd of="$T/corrupt" bs=1 seek=200 conv=notrunc status=none   # inside block 3
run 1 "verify corrupted" "$CASCADE" verify "$V/spec1000.bin.cascade" "$T/corrupt" &&
    expect_in "$T/out" "block 3: hash mismatch" "verify names the bad block"
[ "$(grep -c '^block ' "$T/out")" -eq 1 ] || fail "verify blamed other blocks too: $(cat "$T/out")"
head -c 700 "$V/spec1000.bin" >"$T/short"
run 1 "verify short data" "$CASCADE" verify "$V/spec1000.bin.cascade" "$T/short" &&
    expect_in "$T/out" "blocks 10..15: missing" "verify names the missing blocks"
cp "$V/spec1000.bin" "$T/long"; printf 'extra' >>"$T/long"
run 1 "verify longer data" "$CASCADE" verify "$V/spec1000.bin.cascade" "$T/long" &&
    expect_in "$T/out" "5 bytes more" "verify reports extra bytes"
run 2 "verify bad .cascade" "$CASCADE" verify "$V/bad-magic.cascade" "$V/spec1000.bin"
run 2 "verify missing data" "$CASCADE" verify "$V/spec1000.bin.cascade" "$T/absent"
run 2 "verify one argument" "$CASCADE" verify "$V/spec1000.bin.cascade"

# ---- a FIFO, a folder or a device where a file is expected: refused at once ----
# (before the fix a FIFO with no writer hung open() forever; the timeout
# turns such a hang into a failure)
mkfifo "$T/fifo.cascade" "$T/fifo.data"
mkdir "$T/dir.cascade"
quick() { timeout -s KILL 20 "$@"; }
run 2 "info FIFO" quick "$CASCADE" info "$T/fifo.cascade" &&
    expect_in "$T/err" "cascade info: $T/fifo.cascade is a FIFO, not a regular file" "info FIFO message"
run 2 "info folder" quick "$CASCADE" info "$T/dir.cascade" &&
    expect_in "$T/err" "dir.cascade is a directory, not a regular file" "info folder message"
run 2 "info /dev/null" quick "$CASCADE" info /dev/null &&
    expect_in "$T/err" "/dev/null is a character device, not a regular file" "info device message"
run 2 "verify FIFO .cascade" quick "$CASCADE" verify "$T/fifo.cascade" "$V/spec1000.bin" &&
    expect_in "$T/err" "is a FIFO, not a regular file" "verify FIFO .cascade message"
run 2 "verify FIFO data" quick "$CASCADE" verify "$V/spec1000.bin.cascade" "$T/fifo.data" &&
    expect_in "$T/err" "fifo.data is a FIFO, not a regular file" "verify FIFO data message"
run 2 "create from a FIFO" quick "$CASCADE" create "$T/fifo.data" -o "$T/f.cascade" &&
    expect_in "$T/err" "fifo.data is a FIFO, not a regular file" "create FIFO message"
[ -e "$T/f.cascade" ] && fail "create from a FIFO wrote output"

# ---- help and unknown options ----
for cmd in create info verify; do
    run 0 "$cmd --help" "$CASCADE" "$cmd" --help && expect_in "$T/out" "usage: cascade $cmd" "$cmd --help"
    run 2 "$cmd unknown option" "$CASCADE" "$cmd" --no-such-option
done

if [ "$failures" -ne 0 ]; then
    echo "$failures failure(s)"
    exit 1
fi
echo "all passed"
