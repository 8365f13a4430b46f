#!/usr/bin/env bash
# Browser tests of the dashboard (tests/browser): headless Chromium, Debian's package, driven by
# playwright-core against a real `owlclaw serve`. Screenshots of each page land in target/browser/.
#
#   bash .ci/browser.sh
#
# Installs Chromium with apt-get when /usr/bin/chromium is missing (as root, as CI runs); uses the
# machine's Node.js (20 or later) and npm, and never downloads a browser of Playwright's own.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

if [ ! -x /usr/bin/chromium ]; then
    echo "browser.sh: /usr/bin/chromium is missing: installing Debian's chromium" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q chromium
fi
/usr/bin/chromium --version 2>/dev/null || true

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "browser.sh: node and npm are needed (Node.js 20 or later)" >&2
    exit 1
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
    echo "browser.sh: Node.js $(node --version) is too old: 20 or later is needed" >&2
    exit 1
fi

export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
(cd tests/browser && npm ci --no-audit --no-fund)

# The binary under test, where cargo puts it (CARGO_TARGET_DIR, relative to the repo, if set).
target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in
    /*) ;;
    *) target_dir="$repo/$target_dir" ;;
esac
cargo build -p owlclaw-cli
bin="$target_dir/debug/owlclaw"
if [ ! -x "$bin" ]; then
    echo "browser.sh: no owlclaw binary at $bin after cargo build" >&2
    exit 1
fi

cd tests/browser
OWLCLAW_BIN="$bin" node --test --test-concurrency=1
echo "browser.sh: screenshots in $repo/target/browser/"
