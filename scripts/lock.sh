#!/usr/bin/env bash
# The lock: exact versions with hashes, resolved by uv for every platform and Python >= 3.11.
#   requirements/dev.txt      the package's dependencies, every dependency group and the build backend
#   requirements/runtime.txt  the package's dependencies and the build backend, at the same versions
# scripts/lock.sh          refreshes both (keeps the locked versions that still satisfy pyproject.toml)
# scripts/lock.sh --check  fails when pyproject.toml and the lock disagree
set -euo pipefail
cd "$(dirname "$0")/.."
uv=$(realpath "${UV:-.venv/bin/uv}")
check=${1:-}
here=$PWD
if [ "$check" = "--check" ]; then
  # Resolve again in a copy: the locked versions stay preferred, so only a change in pyproject.toml shows.
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  cp -r pyproject.toml README.md requirements "$work/"
  cd "$work"
fi
toml() { python3 -c "import tomllib; t = tomllib.load(open('pyproject.toml', 'rb')); print($1)"; }
# The build backend is declared once, in [build-system]; make installs it from the lock too.
mkdir -p .venv
toml '"\n".join(t["build-system"]["requires"])' > .venv/build-system.in
groups=()
for group in $(toml '" ".join(t["dependency-groups"])'); do groups+=(--group "pyproject.toml:$group"); done
common=(--quiet --universal --python-version 3.11 --generate-hashes --no-header)
"$uv" pip compile "${common[@]}" pyproject.toml .venv/build-system.in "${groups[@]}" -o requirements/dev.txt
"$uv" pip compile "${common[@]}" pyproject.toml .venv/build-system.in -c requirements/dev.txt -o requirements/runtime.txt
if [ "$check" = "--check" ]; then
  for lock in dev runtime; do
    diff -u "$here/requirements/$lock.txt" "requirements/$lock.txt" >&2 \
      || { echo "pyproject.toml and requirements/$lock.txt disagree: run 'make lock' and commit the result" >&2; exit 1; }
  done
fi
