#!/usr/bin/env bash
# Figures of the faults that must not cost availability (a full cache disk,
# SIGTERM with a read blocked on a missing block): fetch attempts per block,
# log lines and CPU of a mount whose cache filesystem is full for 10 s with
# nobody reading, how fast a read in the middle of it fails, how fast space
# coming back is noticed, and how fast a blocked read fails and the mount
# exits after SIGTERM. The scenarios are tests/it_faults.sh's (which also
# asserts on the counts); this prints every figure it measured.
#
#   contrib/bench/bench_faults.sh [BUILD_DIR]     (default: build)
set -u
SRC_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CASCADE_BUILD=$(cd "${1:-$SRC_ROOT/build}" && pwd)
export CASCADE_SRC=$SRC_ROOT
export CASCADE_HELPERS=${CASCADE_HELPERS:-$CASCADE_BUILD/tests}
bash "$SRC_ROOT/tests/it_faults.sh" 2>&1 | sed -n 's/^ok: /  /p; s/^FAIL: /  MISSED: /p; s/^SKIP/  SKIP/p'
