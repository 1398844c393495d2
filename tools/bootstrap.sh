#!/usr/bin/env bash
# Install what the build and the tests need, idempotently:
#  - Debian packages, when missing and we are root (skipped otherwise, with
#    a line saying what is missing);
#  - a venv under build/venv with requirements-dev.txt and niche itself
#    (editable), re-done only when requirements-dev.txt or pyproject.toml
#    change.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
VENV=$BUILD/venv
PY=${PYTHON:-python3}

need_apt=()
for spec in "$@"; do            # args: cmd:package pairs (cmd: or an absolute path)
    cmd=${spec%%:*}; pkg=${spec#*:}
    if [[ $cmd == /* ]]; then [ -e "$cmd" ]; else command -v "$cmd" >/dev/null 2>&1; fi || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "bootstrap: apt-get install ${need_apt[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q --no-install-recommends "${need_apt[@]}" >/dev/null 2>&1 ||
            { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${need_apt[@]}" >/dev/null; }
    else
        echo "bootstrap: missing Debian packages ${need_apt[*]} (run as root, or: sudo apt-get install ${need_apt[*]})" >&2
    fi
fi

stamp=$VENV/.niche-stamp
want=$(cat requirements-dev.txt pyproject.toml | sha256sum | cut -c1-16)
if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    exit 0
fi
mkdir -p "$BUILD"
if ! [ -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV" 2>/dev/null || {
        [ "$(id -u)" = 0 ] && apt-get install -y -q python3-venv >/dev/null
        "$PY" -m venv "$VENV"
    }
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements-dev.txt
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . 2>/dev/null ||
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e .
echo "$want" > "$stamp"
