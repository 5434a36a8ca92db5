#!/usr/bin/env bash
# Set up what is missing, then run a routeshift CLI command (demo, bench, …).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
# the agent runs with a capped young generation (src/agent/memory.ts AGENT_NODE_FLAGS)
exec node --max-semi-space-size=2 dist/src/cli/main.js "$@"
