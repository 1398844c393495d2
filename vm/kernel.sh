#!/usr/bin/env bash
# Unpack the downloaded kernel .debs and build gpio-sim for every flavour.
# Usage: vm/kernel.sh VMDIR KVERSION KABI      -> VMDIR/k-KVERSION/{root,mods-FLAVOUR}
# Everything lands under VMDIR/k-KVERSION, so a new version starts afresh and
# the old one can be deleted.
set -euo pipefail
VMDIR=$(cd "$1" && pwd) KV=$2 ABI=$3
HERE=$(cd "$(dirname "$0")" && pwd)
K=$VMDIR/k-$KV
DEBS=$VMDIR/debs
mkdir -p "$K"
t0=$(date +%s)

# 1. unpack (kernel images: only what the guests need: vmlinuz, config,
#    modules.builtin*, the module tree (for dependencies) and the rpi dtbs)
if [ ! -e "$K/.unpacked" ]; then
    rm -rf "$K/root" "$K/armhf"; mkdir -p "$K/root" "$K/armhf"
    # in parallel; the big module trees no guest loads from are left out
    # (the modules are only read to compute load order: `vmtool.py modorder`
    # says clearly when one it needs is missing)
    unpack() {  # deb dir
        dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" \
            --exclude='./lib/modules/*/kernel/drivers/net' --exclude='./lib/modules/*/kernel/drivers/gpu' \
            --exclude='./lib/modules/*/kernel/drivers/media' --exclude='./lib/modules/*/kernel/drivers/scsi' \
            --exclude='./lib/modules/*/kernel/drivers/infiniband' --exclude='./lib/modules/*/kernel/drivers/iio' \
            --exclude='./lib/modules/*/kernel/drivers/staging' --exclude='./lib/modules/*/kernel/sound' \
            --exclude='./usr/share/doc'
    }
    pids=()
    for d in "$DEBS"/linux-image-"$ABI"-*_"$KV"_*.deb "$DEBS"/linux-headers-"$ABI"-*_"$KV"_*.deb \
             "$DEBS"/linux-kbuild-6.1_"$KV"_amd64.deb; do
        unpack "$d" "$K/root" & pids+=($!)
    done
    for d in "$DEBS"/linux-kbuild-6.1_"$KV"_armhf.deb "$DEBS"/libc6_*_armhf.deb; do
        unpack "$d" "$K/armhf" & pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    # the headers' Makefile includes the -common tree by absolute path
    for m in "$K"/root/usr/src/linux-headers-"$ABI"-*/Makefile; do
        sed -i "s|^include /usr/src/|include $K/root/usr/src/|" "$m"
    done
    touch "$K/.unpacked"
fi

# 2. the four source files gpio-sim needs, from linux-source of the same version
SRC=$K/src
if [ ! -e "$SRC/.done" ]; then
    rm -rf "$SRC"; mkdir -p "$SRC"
    # --occurrence=1: tar stops reading once it has all four (the writers
    # upstream then die of SIGPIPE, hence no pipefail here)
    (set +o pipefail
     dpkg-deb --fsys-tarfile "$DEBS/linux-source-6.1_${KV}_all.deb" 2>/dev/null |
        tar -xO ./usr/src/linux-source-6.1.tar.xz 2>/dev/null |
        tar -xJ -C "$SRC" --strip-components=3 --occurrence=1 \
            linux-source-6.1/drivers/gpio/gpio-sim.c linux-source-6.1/drivers/gpio/gpio-mockup.c \
            linux-source-6.1/drivers/gpio/gpiolib.h linux-source-6.1/kernel/irq/irq_sim.c)
    # irq_to_desc() is not exported in 6.1; irq_sim is never a module upstream
    sed -i 's/handle_simple_irq(irq_to_desc(irqnum));/generic_handle_irq(irqnum);/' "$SRC/irq_sim.c"
    grep -q 'generic_handle_irq(irqnum);' "$SRC/irq_sim.c"
    echo 'MODULE_LICENSE("GPL");' >> "$SRC/irq_sim.c"
    touch "$SRC/.done"
fi
ls "$SRC"/gpio-sim.c "$SRC"/gpio-mockup.c "$SRC"/gpiolib.h "$SRC"/irq_sim.c >/dev/null

# armhf's own modpost, through qemu-arm (the amd64 one mis-sizes 32-bit ARM structs)
cat > "$K/modpost-armhf" <<EOS
#!/bin/sh
exec qemu-arm-static -L $K/armhf $K/armhf/usr/lib/linux-kbuild-6.1/scripts/mod/modpost.real-lsb-32 "\$@"
EOS
chmod +x "$K/modpost-armhf"

# 3. build per flavour (rpi: optional, the real bcm2835 chip is the point there)
build() {  # flavour make-args...
    local fl=$1; shift
    local out=$K/mods-$fl
    [ -e "$out/gpio-sim.ko" ] && [ "$out/.stamp" -nt "$HERE/gpiosim/Kbuild" ] && return 0
    rm -rf "$out"; mkdir -p "$out"
    cp "$SRC"/*.c "$SRC"/*.h "$HERE/gpiosim/Kbuild" "$out/"
    make -s -C "$K/root/usr/src/linux-headers-$ABI-$fl" M="$out" "$@" modules >"$out/build.log" 2>&1 ||
        { cat "$out/build.log" >&2; echo "vm kernel: gpio-sim build failed for $fl" >&2; return 1; }
    touch "$out/.stamp"
    echo "vm kernel: gpio-sim built for $fl"
}
build amd64 &
build arm64 ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- &
build armmp ARCH=arm CROSS_COMPILE=arm-linux-gnueabihf- MODPOST="$K/modpost-armhf" &
rc=0; for j in 1 2 3; do wait -n || rc=1; done
[ $rc = 0 ] || exit 1
echo "vm kernel: ready in $(( $(date +%s) - t0 )) s"
