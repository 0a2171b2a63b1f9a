#!/usr/bin/env bash
# Set up .venv on first use, then animate the bundled sample into out/sample.mp4 and print its path.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/bootstrap.sh samples
exec .venv/bin/stillmotion demo "$@"
