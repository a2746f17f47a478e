#!/usr/bin/env bash
# `make deploy`: create the process work pool when it is missing, then deploy every
# deployment in prefect.yaml to the Prefect server at PREFECT_API_URL.
#
#   PREFECT=.venv/bin/prefect LOGISTICS_WORK_POOL=my-pool deployments/deploy.sh
#
# PREFECT               the prefect executable (default: `prefect` on PATH)
# LOGISTICS_WORK_POOL   the work pool (default: logistics-process)
# PREFECT_API_URL       the server (default: the active Prefect profile's)
set -euo pipefail

cd "$(dirname "$0")/.."
PREFECT="${PREFECT:-prefect}"
export LOGISTICS_WORK_POOL="${LOGISTICS_WORK_POOL:-logistics-process}"

# The server must be a real one: deploying to Prefect's temporary server would vanish.
API_URL="${PREFECT_API_URL:-$("$PREFECT" config view 2>/dev/null | sed -n "s/^PREFECT_API_URL='\([^']*\)'.*/\1/p")}"
if [ -z "$API_URL" ]; then
    echo "error: PREFECT_API_URL is not set; point it at the Prefect server, e.g." >&2
    echo "  export PREFECT_API_URL=http://localhost:4200/api   (the docker compose stack)" >&2
    exit 1
fi
if ! python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1].rstrip('/') + '/health', timeout=10)" "$API_URL" 2>/dev/null; then
    echo "error: no Prefect server answers at $API_URL (is it running? \`docker compose up -d\` starts one)" >&2
    exit 1
fi

if ! "$PREFECT" --no-prompt work-pool inspect "$LOGISTICS_WORK_POOL" >/dev/null 2>&1; then
    # Missing: a process pool with the default job template (no settings needed).
    "$PREFECT" --no-prompt work-pool create --type process "$LOGISTICS_WORK_POOL"
else
    echo "Work pool '$LOGISTICS_WORK_POOL' exists; keeping its settings."
fi

"$PREFECT" --no-prompt deploy --all
