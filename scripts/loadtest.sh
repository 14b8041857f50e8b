#!/usr/bin/env bash
# The load test, in one command: bash scripts/loadtest.sh
#
# Installs wrk (Debian/Ubuntu) when missing, builds the release binaries and runs
# target/release/loadtest (the tools/loadtest crate), which starts the baseline server, webhooker and its own sink on
# 127.0.0.1, measures, stops them all and prints a Markdown table to stdout (progress goes
# to stderr). Takes about 6 minutes. See tools/loadtest/src/bin/loadtest.rs for what is measured.
set -euo pipefail

cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null 2>&1; then
    echo "loadtest.sh: installing wrk" >&2
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update
    $sudo apt-get install -y wrk
fi

cargo build --release -p webhooker -p loadtest --bins
# A fresh build leaves hundreds of MB of dirty pages; their writeback competes with
# webhooker's fsyncs and halved the 1-connection figures in a run straight after a build.
sync

# exec: loadtest gets SIGINT/SIGTERM itself and stops everything it started.
exec target/release/loadtest
