#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test three ways:
#   1. the normal build: the whole suite (unit + integration + real mounts);
#   2. AddressSanitizer + UndefinedBehaviorSanitizer: the whole suite again;
#   3. ThreadSanitizer: the concurrency tests (store, block server, tracker
#      server, peer node, and the integration tests whose processes run
#      those threads).
# Exits non-zero when anything fails. Build folders: build/, build-asan/,
# build-tsan/ under the source tree (override with CASCADE_BUILD_PREFIX).
# Set CASCADE_TEST_QUICK=1 to run only the normal build.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
prefix=${CASCADE_BUILD_PREFIX:-$src/build}
# shellcheck source=contrib/deps.sh
. "$src/contrib/deps.sh"
cascade_install_deps

# Any sanitizer report stops the process that made it, so a report in a
# child (a seeder, a background mount) fails its test instead of scrolling by.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}

passed=0 failed=0 skipped=0
failures=()

# count_results LOGFILE: add meson's summary counts to the totals.
count_results() {
    local ok fail skip timeout
    ok=$(sed -n 's/^Ok: *\([0-9]*\).*/\1/p' "$1" | tail -1)
    fail=$(sed -n 's/^Fail: *\([0-9]*\).*/\1/p' "$1" | tail -1)
    timeout=$(sed -n 's/^Timeout: *\([0-9]*\).*/\1/p' "$1" | tail -1)
    skip=$(sed -n 's/^Skipped: *\([0-9]*\).*/\1/p' "$1" | tail -1)
    passed=$((passed + ${ok:-0}))
    failed=$((failed + ${fail:-0} + ${timeout:-0}))
    skipped=$((skipped + ${skip:-0}))
}

# run_suite NAME BUILDDIR MESON-SETUP-ARGS... -- MESON-TEST-ARGS...
run_suite() {
    local name=$1 dir=$2; shift 2
    local setup_args=() test_args=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do setup_args+=("$1"); shift; done
    [ $# -gt 0 ] && shift
    test_args=("$@")
    echo "=== $name: configure and build ($dir)"
    if [ -d "$dir/meson-info" ]; then
        meson configure "$dir" "${setup_args[@]}" >/dev/null
    else
        meson setup "$dir" "$src" "${setup_args[@]}" >/dev/null
    fi
    if ! ninja -C "$dir"; then
        failures+=("$name: build failed")
        failed=$((failed + 1))
        return
    fi
    echo "=== $name: test"
    local log="$dir/test-summary.log" rc=0
    meson test -C "$dir" --print-errorlogs "${test_args[@]}" 2>&1 | tee "$log" || rc=$?
    count_results "$log"
    [ "$rc" -eq 0 ] || failures+=("$name: tests failed (see $dir/meson-logs/testlog.txt)")
}

run_suite "normal" "$prefix" -Dtests=enabled --
if [ "${CASCADE_TEST_QUICK:-0}" != 1 ]; then
    run_suite "asan+ubsan" "$prefix-asan" -Dtests=enabled \
        -Db_sanitize=address,undefined -Db_lundef=false -- \
        --timeout-multiplier 3
    # TSan needs a non-randomised layout on kernels with high mmap entropy.
    tsan_wrapper=""
    setarch "$(uname -m)" -R true 2>/dev/null && tsan_wrapper="setarch $(uname -m) -R"
    run_suite "tsan" "$prefix-tsan" -Dtests=enabled -Db_sanitize=thread -Db_lundef=false -- \
        --timeout-multiplier 3 ${tsan_wrapper:+--wrapper "$tsan_wrapper"} \
        test_store test_block_server test_tracker_server test_node it_get it_misbehave \
        it_mount it_mount_swarm it_faults
fi

echo
for f in "${failures[@]+"${failures[@]}"}"; do echo "FAILED: $f"; done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ ${#failures[@]} -eq 0 ]
