#!/bin/sh
# The whole test suite: installs what is missing, builds with warnings as
# errors, and runs every unit, integration and bench-smoke test with CTest.
set -eu
cd "$(dirname "$0")/.."
sh scripts/install-deps.sh
cmake -S . -B build -DOPTD_WERROR=ON >/dev/null
cmake --build build -j"$(nproc)"
cd build
ctest --output-on-failure --timeout 900 "$@"
