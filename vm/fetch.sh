#!/usr/bin/env bash
# Download (never install) the kernel .debs of every guest and what building
# gpio-sim for them needs, into $VMDIR/debs; files already there are kept
# (their names carry the version, so a new kernel version downloads anew).
# Usage: vm/fetch.sh VMDIR KVERSION KABI
set -euo pipefail
VMDIR=$1 KV=$2 ABI=$3
export APT_CONFIG=$(cd "$VMDIR" && pwd)/apt/apt.conf
mkdir -p "$VMDIR/debs"; cd "$VMDIR/debs"
# name arch version ("-" = apt's candidate)
pkgs="
linux-image-$ABI-amd64-unsigned amd64 $KV
linux-headers-$ABI-amd64 amd64 $KV
linux-kbuild-6.1 amd64 $KV
linux-headers-$ABI-common all $KV
linux-source-6.1 all $KV
linux-image-$ABI-arm64-unsigned arm64 $KV
linux-headers-$ABI-arm64 arm64 $KV
linux-image-$ABI-armmp armhf $KV
linux-headers-$ABI-armmp armhf $KV
linux-kbuild-6.1 armhf $KV
libc6 armhf -
linux-image-$ABI-rpi armel $KV
"
want=()
while read -r name arch ver; do
    [ -n "$name" ] || continue
    if [ "$ver" = - ]; then glob="${name}_*_${arch}.deb"; else glob="${name}_${ver}_${arch}.deb"; fi
    compgen -G "$glob" >/dev/null && continue
    spec=$name; [ "$arch" != all ] && spec+=":$arch"; [ "$ver" != - ] && spec+="=$ver"
    want+=("$spec")
done <<< "$pkgs"
[ ${#want[@]} -eq 0 ] && { echo "vm fetch: all .debs cached"; exit 0; }
echo "vm fetch: apt-get download ${want[*]}"
apt-get download -q "${want[@]}" 2>&1 | grep -v '^Get:' || true
for s in "${want[@]}"; do
    n=${s%%[:=]*}; compgen -G "${n}_*.deb" >/dev/null || { echo "vm fetch: $s did not download" >&2; exit 1; }
done
