#!/usr/bin/env bash
# Real-browser end-to-end test of the webhooker UI.
#
#   bash tests/browser/run.sh
#
# Uses Debian's chromium (installed with apt when missing; no browser download) driven by
# playwright-core. Builds the debug binary, starts it on a free loopback port with a temp
# DATA_DIR, then runs e2e.mjs (which also runs a loopback HTTP sink as the target).
# Screenshots land in target/browser-screenshots/. Everything started here is stopped on
# exit. Prints "browser e2e: N passed, N failed" and exits non-zero on failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
chromium="${CHROMIUM:-/usr/bin/chromium}"

if [ ! -x "$chromium" ]; then
    echo "browser e2e: installing chromium with apt"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi

cd "$here"
if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
else
    npm install --no-audit --no-fund --loglevel=error
fi

(cd "$root" && cargo build --quiet --bin webhooker)
bin="${CARGO_TARGET_DIR:-$root/target}/debug/webhooker"

work="$(mktemp -d)"
server_pid=""
cleanup() {
    status=$?
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$server_pid" 2>/dev/null || true
    fi
    if [ "$status" -ne 0 ] && [ -f "$work/server.log" ]; then
        echo "--- webhooker log (last 40 lines) ---"
        tail -n 40 "$work/server.log" || true
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT INT TERM

# PORT=0 is not supported: let the OS pick a free port, then hand it over.
port="$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
password="browser-e2e-$(date +%s)-$RANDOM"

mkdir -p "$work/data"
# Run from the temp dir so a developer's .env is not picked up.
(
    cd "$work"
    exec env -u BASE_URL -u METRICS_USERNAME -u METRICS_PASSWORD -u TRUST_PROXY \
        HOST=127.0.0.1 PORT="$port" DATA_DIR="$work/data" \
        WEBHOOKER_ENVIRONMENT=dev WEBHOOKER_ADMIN_PASSWORD="$password" \
        ALLOWED_TARGET_NETWORKS=127.0.0.0/8 RUST_LOG="${RUST_LOG:-info}" \
        "$bin"
) >"$work/server.log" 2>&1 &
server_pid=$!

rm -rf "$root/target/browser-screenshots"
mkdir -p "$root/target/browser-screenshots"
WEBHOOKER_URL="http://127.0.0.1:$port" \
    WEBHOOKER_PASSWORD="$password" \
    CHROMIUM="$chromium" \
    SCREENSHOT_DIR="$root/target/browser-screenshots" \
    timeout 300 node "$here/e2e.mjs"
