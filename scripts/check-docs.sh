#!/usr/bin/env bash
# Runs the shell examples of README.md and docs/*.md that are marked runnable, against a
# real server, so every such command works as written. Called by .ci/run.
#
# A fenced block preceded by the line `<!-- runnable -->` runs while a server is up; one
# preceded by `<!-- runnable: stopped -->` runs with it stopped (the admin commands). The
# blocks of one file run in order in one bash session (`set -euo pipefail`), so a variable
# set in one block is there in the next. The server is the debug build of this checkout on
# a free loopback port with a temporary DATA_DIR and the admin password the docs use
# (`yourpassword`); `localhost:8080` in a block is rewritten to that port, the only change
# made to what the docs say. `webhooker` is on the PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet --bin webhooker
bin_dir="$(pwd)/target/debug"
work="$(mktemp -d)"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

# The functions each generated script calls between blocks.
cat > "$work/prelude.sh" <<EOF
set -euo pipefail
export PATH="$bin_dir:\$PATH" DATA_DIR="$work/data" PORT="$port" HOST=127.0.0.1
export WEBHOOKER_ADMIN_PASSWORD=yourpassword
cd "$work"
server_up() {
    [ -f "$work/pid" ] && return 0
    webhooker > "$work/server.log" 2>&1 &
    echo \$! > "$work/pid"
    for _ in \$(seq 300); do
        curl -fs "http://127.0.0.1:$port/.well-known/healthcheck" >/dev/null && return 0
        sleep 0.1
    done
    echo "check-docs: the server did not start" >&2; cat "$work/server.log" >&2; return 1
}
server_down() {
    [ -f "$work/pid" ] || return 0
    kill -TERM "\$(cat "$work/pid")"
    for _ in \$(seq 300); do
        kill -0 "\$(cat "$work/pid")" 2>/dev/null || { rm -f "$work/pid"; return 0; }
        sleep 0.1
    done
    echo "check-docs: the server did not stop" >&2; return 1
}
trap server_down EXIT
EOF

blocks=0
for doc in README.md docs/*.md; do
    script="$work/$(basename "$doc" .md).sh"
    # Extract the marked blocks, each after the call that puts the server in its state.
    count="$(python3 - "$doc" "$script" "$work/prelude.sh" "$port" <<'PY'
import re, sys
doc, script, prelude, port = sys.argv[1:]
lines = open(doc, encoding="utf-8").read().split("\n")
out, count, i = [open(prelude).read()], 0, 0
while i < len(lines):
    mark = re.fullmatch(r"<!-- runnable(: stopped)? -->", lines[i].strip())
    if mark and i + 1 < len(lines) and lines[i + 1].startswith("```"):
        j = i + 2
        body = []
        while j < len(lines) and not lines[j].startswith("```"):
            body.append(lines[j])
            j += 1
        count += 1
        out.append("server_down" if mark.group(1) else "server_up")
        out.append(f"echo '== {doc}:{i + 3}' >&2")
        out.append("\n".join(body).replace("localhost:8080", f"127.0.0.1:{port}"))
        i = j
    i += 1
open(script, "w").write("\n".join(out) + "\n")
print(count)
PY
)"
    [ "$count" -eq 0 ] && continue
    blocks=$((blocks + count))
    rm -rf "$work/data" "$work/pid"
    if ! bash "$script" > "$work/out.txt" 2>&1; then
        echo "check-docs: a runnable example of $doc failed:" >&2
        tail -n 40 "$work/out.txt" >&2
        [ -f "$work/server.log" ] && tail -n 20 "$work/server.log" >&2
        exit 1
    fi
    echo "check-docs: $doc: $count runnable blocks ran"
done
echo "check-docs: $blocks runnable blocks passed"
