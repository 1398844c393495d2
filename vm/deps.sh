#!/usr/bin/env bash
# Install the Debian packages the VM lane needs, when missing and we are root.
# Usage: vm/deps.sh   (idempotent; prints one line saying what it did)
set -euo pipefail
# command:package pairs; a package is installed when its command is missing.
pairs=(
    qemu-system-x86_64:qemu-system-x86
    qemu-system-aarch64:qemu-system-arm
    qemu-arm-static:qemu-user-static
    update-binfmts:binfmt-support
    aarch64-linux-gnu-gcc:gcc-aarch64-linux-gnu
    arm-linux-gnueabihf-gcc:gcc-arm-linux-gnueabihf
    fdtput:device-tree-compiler
    gcc:gcc
    make:make
    xz:xz-utils
    zstd:zstd
)
need=()
for p in "${pairs[@]}"; do
    command -v "${p%%:*}" >/dev/null 2>&1 || need+=("${p#*:}")
done
[ ${#need[@]} -eq 0 ] && { echo "vm-deps: all present"; exit 0; }
if [ "$(id -u)" != 0 ]; then
    echo "vm-deps: missing Debian packages ${need[*]} (run as root, or: sudo apt-get install --no-install-recommends ${need[*]})" >&2
    exit 1
fi
echo "vm-deps: apt-get install ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null; }
