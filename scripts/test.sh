#!/usr/bin/env bash
# The whole test suite: unit tests and the black-box tests with the io_uring driver, then the
# black-box tests again with the epoll driver.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace
RINGLB_TEST_DRIVER=epoll cargo test --test it
