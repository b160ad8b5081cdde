#!/usr/bin/env bash
# Configures and builds Depot into build/ (binaries in build/bin/). Extra arguments go to CMake.
#   BUILD_DIR=build-asan scripts/build.sh -DDEPOT_SANITIZE=ON
#   TARGETS="depot depot-storaged" scripts/build.sh   (only these targets)
# Builds take a lock so that two builds never run at once on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
exec 9>/tmp/depot-build.lock
flock 9
if [[ ! -f $BUILD_DIR/build.ninja ]]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo} "$@"
elif (($# > 0)); then
  cmake -S . -B "$BUILD_DIR" "$@"
fi
# shellcheck disable=SC2086
cmake --build "$BUILD_DIR" -j "$JOBS" ${TARGETS:+--target $TARGETS}
