#!/usr/bin/env bash
# Refresh constraints.txt, the pins that `make`, CI and the image install with: one universal
# resolution (every Python >= 3.11 and platform, with markers where they differ), from wheels
# only. Keeps current pins that still fit; `scripts/lock.sh --upgrade` moves every pin to the
# newest release. Extra arguments go to `uv pip compile` (e.g. --upgrade-package numpy).
set -euo pipefail
cd "$(dirname "$0")/.."

uv=${UV:-$(command -v uv || echo .venv/bin/uv)}
output=${LOCK_OUTPUT:-constraints.txt}
exec "$uv" pip compile pyproject.toml --universal --python-version 3.11 --all-extras \
    --only-binary :all: --quiet --custom-compile-command scripts/lock.sh --output-file "$output" "$@"
