#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer + ASan + UBSan, clang) of every parser
# that takes untrusted bytes:
#   fuzz_meta         .cascade files (cascade_meta_parse)
#   fuzz_tracker      tracker requests, decoded and handled by the rules
#   fuzz_peer_answer  the fetch loop's pipelined peer-answer parser
#
#   contrib/fuzz/run.sh [TARGET...]        FUZZ_SECONDS=N per target (60)
# Builds into contrib/fuzz/out/ (ignored by git), seeds each corpus from
# tests/vectors, runs the targets one after another, and exits non-zero if
# any of them crashed: the crashing input is saved as out/crash-*; replay
# it with `contrib/fuzz/out/TARGET out/crash-...`.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/../.." && pwd)
out=$here/out
seconds=${FUZZ_SECONDS:-60}
mkdir -p "$out"
command -v clang >/dev/null || { echo "run.sh: clang is needed (apt-get install clang)" >&2; exit 2; }

common=("$src/cascade/util.c" "$src/cascade/log.c" "$src/cascade/sha256.c")
declare -A sources=(
    [fuzz_meta]="$src/cascade/meta.c"
    [fuzz_tracker]="$src/net/wire.c $src/net/tracker_state.c"
    [fuzz_peer_answer]="$src/net/wire.c $src/net/sock.c $src/net/peer_conn.c"
)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_meta fuzz_tracker fuzz_peer_answer)

# Seed corpora from the protocol vectors.
mkdir -p "$out/corpus_fuzz_meta" "$out/corpus_fuzz_tracker" "$out/corpus_fuzz_peer_answer"
cp "$src"/tests/vectors/*.cascade "$src"/tests/vectors/course/*.cascade "$out/corpus_fuzz_meta/" 2>/dev/null || true
grep -v '^#' "$src/tests/vectors/wire-examples.txt" | sed -n 1p | xxd -r -p > "$out/corpus_fuzz_tracker/subscribe"
{ printf '\x04'; grep -v '^#' "$src/tests/vectors/wire-examples.txt" | sed -n 4p | xxd -r -p; } \
    > "$out/corpus_fuzz_peer_answer/answer"

status=0
for t in "${targets[@]}"; do
    [ -n "${sources[$t]:-}" ] || { echo "run.sh: unknown target $t" >&2; exit 2; }
    # shellcheck disable=SC2086
    clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
        -D_GNU_SOURCE -DCASCADEFS_VERSION='"fuzz"' -I"$src" \
        "$here/$t.c" "${common[@]}" ${sources[$t]} -lcrypto -lpthread -o "$out/$t"
    echo "== $t: $seconds s"
    if (cd "$out" && "./$t" -max_total_time="$seconds" -jobs=1 -print_final_stats=1 \
            "corpus_$t" > "$t.log" 2>&1); then
        grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$out/$t.log" | sed 's/^/   /'
        echo "   no crash"
    else
        echo "   CRASH: see $out/$t.log"
        grep -E "^==|SUMMARY|Test unit written" "$out/$t.log" | head -5 | sed 's/^/   /'
        status=1
    fi
done
exit $status
