#!/usr/bin/env bash
# Builds the layer apply fuzz target with clang (libFuzzer, AddressSanitizer, UBSan) in a build
# folder of its own and fuzzes for a bounded time, starting from a copy of the seed corpus.
#
#   tests/fuzz/run.sh [SECONDS]     default 60; FUZZ_BUILD=DIR picks the build folder (default build-fuzz/)
#
# A crash leaves its input in the work folder printed at the end: copy it into tests/fuzz/corpus/
# and the ordinary unit test run (fuzz_apply_replay) replays it from then on.
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds=${1:-60}
build=${FUZZ_BUILD:-build-fuzz}  # inside this checkout (ignored by git), so it builds these sources
command -v clang++ >/dev/null || { echo "run.sh: clang++ is needed (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }

if [ ! -f "$build/build.ninja" ]; then
  # -fsanitize=fuzzer-no-link gives the libraries coverage instrumentation; the target itself
  # links libFuzzer (tests/fuzz/meson.build). werror off: clang warns about other things than GCC.
  CC=clang CXX=clang++ meson setup "$build" --buildtype=debugoptimized -Dfuzz=true -Dwerror=false \
    -Db_sanitize=address,undefined -Db_lundef=false -Dcpp_args=-fsanitize=fuzzer-no-link >/dev/null
fi
ninja -C "$build" tests/fuzz/fuzz_apply

work=$(mktemp -d "${TMPDIR:-/tmp}/ocibuild-fuzz-run.XXXXXX")
cp -r tests/fuzz/corpus "$work/corpus"  # libFuzzer adds what it finds to its first corpus folder
status=0
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  "$build/tests/fuzz/fuzz_apply" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 \
  -artifact_prefix="$work/" "$work/corpus" || status=$?
if [ "$status" -ne 0 ]; then
  echo "run.sh: the fuzzer failed (exit $status); reproducers are in $work" >&2
  exit "$status"
fi
echo "run.sh: no crash in ${seconds}s; corpus grew to $(ls "$work/corpus" | wc -l) inputs"
rm -rf "$work"
