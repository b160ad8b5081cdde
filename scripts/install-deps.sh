#!/usr/bin/env bash
# Installs every Debian 12 package that the build, the tests, the demo and the benchmarks need.
# Idempotent: packages already present are skipped; `apt-get update` runs only when something is
# missing.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libevent-dev libleveldb-dev libsnappy-dev libxxhash-dev libssl-dev zlib1g-dev
  prometheus-cpp-dev libgtest-dev libgmock-dev
  libspdlog-dev libfmt-dev libcli11-dev nlohmann-json3-dev
  clang libclang-rt-14-dev
  nginx-light libnginx-mod-http-lua libnginx-mod-http-ndk libnginx-mod-http-js
  curl e2fsprogs procps
  wrk siege apache2-utils
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts nginx as a service when it is installed; Depot runs its own nginx instances.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
  $SUDO systemctl stop nginx || true
fi
echo "install-deps: done"
