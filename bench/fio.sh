#!/usr/bin/env bash
# The fio harness: rowfs vs the go-fuse passthrough, interleaved. See bench/fiobench.
set -euo pipefail
cd "$(dirname "$0")/.."
exec go run ./bench/fiobench --bin bin "$@"
