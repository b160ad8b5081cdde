#!/usr/bin/env bash
# Installs what is needed, builds, and runs every test:
#   1. the release build: the daemons and the CLI, and the 2 GiB RSS test that measures them
#      (with --no-asan or --quick: every unit and integration test, in release),
#   2. every unit and integration test (real daemons on 127.0.0.1) built with AddressSanitizer +
#      UndefinedBehaviorSanitizer,
#   3. a short libFuzzer run of every decoder of untrusted bytes (clang).
# Options: --quick (step 1 only), --no-asan, --no-fuzz. Extra env: CTEST_ARGS, FUZZ_SECONDS.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0 asan=1 fuzz=1
for a in "$@"; do
  case "$a" in
    --quick) quick=1 ;;
    --no-asan) asan=0 ;;
    --no-fuzz) fuzz=0 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "test.sh: unknown option $a" >&2; exit 2 ;;
  esac
done
((quick)) && asan=0 fuzz=0

scripts/install-deps.sh
JOBS=${JOBS:-$(nproc)}
# Tests that start daemons are mostly waiting on sockets and disks: run two at a time.
CTEST_PARALLEL=${CTEST_PARALLEL:-2}

# Release-only load tests: the 2 GiB transfer measures the release binaries' RSS, and the
# 100,000-file trunk test is a load test whose code paths the smaller trunk tests cover.
RELEASE_ONLY='TwoGiB|HundredThousand'
if ((asan)); then
  # Every test runs under ASan + UBSan below. Running the whole suite twice does not fit CI's 30
  # minutes on two cores: the release build here makes what the 2 GiB RSS test measures (the
  # daemons it starts and the CLI) and runs that test. The 100,000-file load test (95 s) runs with
  # --quick and --no-asan, which run every test in release.
  echo "== build (RelWithDebInfo: the daemons and the CLI of the 2 GiB RSS test)"
  TARGETS="depot-trackerd depot-storaged depot cli_test" scripts/build.sh
  echo "== tests (release build: the 2 GiB RSS test)"
  ctest --test-dir build --output-on-failure -R 'TwoGiB' ${CTEST_ARGS:-}
else
  echo "== build (RelWithDebInfo)"
  scripts/build.sh
  echo "== tests (release build)"
  ctest --test-dir build --output-on-failure -j "$CTEST_PARALLEL" ${CTEST_ARGS:-}
fi

if ((asan)); then
  echo "== build (ASan + UBSan)"
  BUILD_DIR=build-asan BUILD_TYPE=Debug scripts/build.sh -DDEPOT_SANITIZE=ON
  echo "== tests (ASan + UBSan: every test but the release-only load tests)"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j "$CTEST_PARALLEL" \
    -E "$RELEASE_ONLY" ${CTEST_ARGS:-}
fi

if ((fuzz)); then
  echo "== build (libFuzzer, clang)"
  BUILD_DIR=build-fuzz TARGETS="fuzz_file_id fuzz_decoders fuzz_internal fuzz_http fuzz_opsd_http fuzz_opsd_json" scripts/build.sh -DDEPOT_FUZZ=ON -DDEPOT_BUILD_TESTS=OFF \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++
  secs=${FUZZ_SECONDS:-12}  # six targets: 72 s in all, so CI stays under 30 minutes
  for name in fuzz_file_id fuzz_decoders fuzz_internal fuzz_http fuzz_opsd_http fuzz_opsd_json; do
    work=$(mktemp -d)
    cp tests/fuzz/corpus/"$name"/* "$work"/
    echo "== fuzz $name for ${secs}s"
    build-fuzz/fuzz/"$name" -max_total_time="$secs" -max_len=4096 "$work" 2>&1 | tail -n 2
    rm -rf "$work"
  done
fi
echo "== all tests passed"
