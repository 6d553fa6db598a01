#!/usr/bin/env bash
# Any CI (Jenkins, Buildkite, a cron job): ci/release.sh <arch> [flavor] [extra invoke release flags]
# As root on a Debian/Ubuntu host or privileged container (the build root and the system checks mount).
# Builds and verifies dist/ exactly as the GitHub/GitLab jobs do. Only setup and `invoke` here.
set -euo pipefail
if [ "$#" -lt 1 ]; then
  echo "usage: ci/release.sh x86_64|aarch64 [python-llm|python|all] [invoke release flags...]" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
pip install -r requirements.txt
invoke release --arch "$1" --flavor "${2:-python-llm}" "${@:3}"
