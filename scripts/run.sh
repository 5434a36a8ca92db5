#!/usr/bin/env bash
# Set up what is missing, then run a routeshift CLI command (demo, bench, …).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
exec node dist/src/cli/main.js "$@"
