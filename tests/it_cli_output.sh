#!/usr/bin/env bash
# Integration test for what `cascade` prints beyond its work:
#   - `cascade info --json` parses as JSON (python3's parser), has the
#     documented keys, and its values match `cascade info` (with --blocks
#     too), also for a file name with quotes, control characters and bytes
#     that are not UTF-8;
#   - the progress display: on a terminal (a pty made by script(1)) create
#     and verify draw a bar with percent, binary units and the time taken;
#     when stderr is not a terminal they write nothing to it.
set -u

V="${CASCADE_VECTORS:?CASCADE_VECTORS not set}"
# shellcheck source=tests/swarm_lib.sh
. "${CASCADE_SRC:?CASCADE_SRC not set}/tests/swarm_lib.sh"
command -v python3 >/dev/null || skip "python3 missing (bash contrib/deps.sh)"

# ---- info --json against info ----
# compare_json FILE.cascade: info --blocks and info --json --blocks agree.
compare_json() {
    local f=$1 name
    name=$(basename "$f")
    if ! "$CASCADE" info --blocks "$f" >"$T/text" 2>"$T/err" ||
       ! "$CASCADE" info --json --blocks "$f" >"$T/json" 2>>"$T/err"; then
        fail "info $name: $(cat "$T/err")"
        return
    fi
    if python3 - "$T/text" "$T/json" "$f" >"$T/out" 2>&1 <<'EOF'; then
import json, os, re, sys
text = open(sys.argv[1], encoding="utf-8", errors="surrogateescape").read().splitlines()
raw = open(sys.argv[2], "rb").read()
assert raw.endswith(b"\n") and raw.count(b"\n") == 1, "not one line"
j = json.loads(raw.decode("utf-8"))          # strict: must be valid UTF-8 JSON
keys = ["name", "size", "block_size", "block_count", "last_block_size",
        "cascade_hash", "target_hash", "blocks"]
assert list(j) == keys, "keys %s" % list(j)
block_line = re.compile(r"^block [0-9]+ [0-9a-f]{64}$")
fields = {}
for line in text:
    if block_line.match(line):
        continue
    key, _, value = line.partition("  ")
    fields[key.strip()] = value.strip()
base = os.path.basename(sys.argv[3].encode("utf-8", "surrogateescape"))
want_name = base[:-len(b".cascade")].decode("utf-8", "replace")
assert j["name"] == want_name, "name %r, want %r" % (j["name"], want_name)
assert str(j["size"]) == fields["size"].split()[0], "size"
assert str(j["block_size"]) == fields["block size"], "block_size"
assert str(j["block_count"]) == fields["blocks"], "block_count"
assert str(j["last_block_size"]) == fields["last block"], "last_block_size"
assert j["cascade_hash"] == fields["cascade hash"], "cascade_hash"
assert j["target_hash"] == fields["target hash"], "target_hash"
blocks = [l.split()[2] for l in text if block_line.match(l)]
assert j["blocks"] == blocks and len(blocks) == j["block_count"], "blocks"
for k in ("size", "block_size", "block_count", "last_block_size"):
    assert type(j[k]) is int, k
EOF
        ok "info --json $name matches info"
    else
        fail "info --json $name: $(tail -1 "$T/out")"
    fi
}
for f in "$V"/*.bin.cascade "$V"/course/*.cascade; do
    compare_json "$f"
done
# A name that needs escaping: a quote, a backslash, a tab, a byte not UTF-8.
odd="$T/$(printf 'q"b\\t\tx\xff.bin.cascade')"
cp "$V/even4096.bin.cascade" "$odd"
compare_json "$odd"

"$CASCADE" info --json "$V/even4096.bin.cascade" >"$T/json"
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert "blocks" not in j' "$T/json" ||
    fail "info --json without --blocks has a blocks key"
"$CASCADE" info --json "$V/bad-magic.cascade" >"$T/out" 2>"$T/err"
rc=$?
[ $rc -eq 2 ] || fail "info --json on a bad file: exit $rc, want 2"
[ -s "$T/out" ] && fail "info --json on a bad file wrote to stdout: $(cat "$T/out")"
grep -q "cascade info: " "$T/err" || fail "info --json on a bad file: no message"
if [ -w /dev/full ]; then
    "$CASCADE" info --json "$V/even4096.bin.cascade" >/dev/full 2>"$T/err"
    rc=$?
    [ $rc -eq 1 ] && grep -q "could not write" "$T/err" ||
        fail "info --json to a full disk: exit $rc, $(cat "$T/err")"
fi
ok "info --json errors"

# ---- progress ----
head -c $((3 * 1024 * 1024 + 5)) /dev/urandom >"$T/data"
"$CASCADE" create "$T/data" -b 64K >"$T/out" 2>"$T/err" </dev/null
[ -s "$T/err" ] && fail "create wrote to a stderr that is no terminal: $(cat "$T/err")"
"$CASCADE" verify "$T/data.cascade" "$T/data" >"$T/out" 2>"$T/err" </dev/null
[ -s "$T/err" ] && fail "verify wrote to a stderr that is no terminal: $(cat "$T/err")"
ok "no progress when stderr is not a terminal"

if ! command -v script >/dev/null; then
    echo "SKIP: script(1) missing (package util-linux): progress on a terminal not checked"
else
    # on_tty FILE CMD...: run CMD with stdin, stdout and stderr on a pty.
    on_tty() {
        local out=$1
        shift
        script -qec "$(printf '%q ' "$@")" /dev/null </dev/null >"$out" 2>&1
    }
    for what in create verify; do
        if [ $what = create ]; then
            on_tty "$T/tty" "$CASCADE" create "$T/data" -b 64K -f
            label=hashing
        else
            on_tty "$T/tty" "$CASCADE" verify "$T/data.cascade" "$T/data"
            label=verifying
        fi
        rc=$?
        tr '\r' '\n' <"$T/tty" | sed 's/\x1b\[K//g' >"$T/lines"
        last=$(grep -a "^$label " "$T/lines" | tail -1)
        if [ $rc -ne 0 ]; then
            fail "$what on a terminal: exit $rc: $(cat "$T/lines")"
        elif ! grep -qaE "^$label 100% \[#+\]  3\.0 MiB / 3\.0 MiB( .*)?  in 0:[0-9]{2}\$" <<<"$last"; then
            fail "$what on a terminal: last progress line '$last'"
        else
            ok "$what on a terminal: '$last'"
        fi
    done
    grep -qa "^OK: all 49 blocks match" "$T/lines" || fail "verify on a terminal: no summary"
    # -q: no bar even on a terminal.
    on_tty "$T/tty" "$CASCADE" verify -q "$T/data.cascade" "$T/data"
    grep -qa "verifying" "$T/tty" && fail "verify -q drew progress on a terminal"
    ok "-q draws nothing on a terminal"
fi

echo "it_cli_output: $failures failure(s)"
[ "$failures" -eq 0 ]
