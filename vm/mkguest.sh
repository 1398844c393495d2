#!/usr/bin/env bash
# Assemble one guest: VMDIR/ARCH/{initramfs.cpio,guest.json[,rpi.dtb]}.
# Usage: vm/mkguest.sh VMDIR ARCH INIT PORT   (ARCH: x86_64 arm64 armhf raspi0)
# Needs VMDIR/kernel.env and the unpacked kernels (vm/kernel.sh).
set -euo pipefail
VMDIR=$(cd "$1" && pwd) ARCH=$2 INIT=$3 PORT=$4
HERE=$(cd "$(dirname "$0")" && pwd)
. "$VMDIR/kernel.env"
K=$VMDIR/k-$KVERSION
OUT=$VMDIR/$ARCH
mkdir -p "$OUT"
case $ARCH in
    x86_64) fl=amd64; mods="configfs virtio_pci virtio_console" ;;
    arm64)  fl=arm64; mods="configfs virtio_mmio virtio_console" ;;
    armhf)  fl=armmp; mods="configfs virtio_mmio virtio_console" ;;
    raspi0) fl=rpi;   mods="" ;;
    *) echo "mkguest: unknown arch $ARCH" >&2; exit 2 ;;
esac
KVER=$KABI-$fl
extra=()
if [ -e "$K/mods-$fl/gpio-sim.ko" ]; then
    extra=("irq_sim=$K/mods-$fl/irq_sim.ko" "gpio_sim=$K/mods-$fl/gpio-sim.ko"
           "gpio_mockup=$K/mods-$fl/gpio-mockup.ko")
    mods="$mods gpio_sim gpio_mockup"
fi
specs=("init=$INIT" "niche-port=$PORT" "etc/")
: > "$OUT/modules"
if [ -n "$mods" ]; then
    for m in $(python3 "$HERE/vmtool.py" modorder "$K/root" "$KVER" "${extra[@]}" $mods); do
        b=$(basename "$m")
        specs+=("lib/modules/$b=$m")
        case $b in
            gpio-mockup.ko) echo "/lib/modules/$b gpio_mockup_ranges=-1,8 gpio_mockup_named_lines=1" ;;
            *) echo "/lib/modules/$b" ;;
        esac >> "$OUT/modules"
    done
fi
specs+=("etc/modules=$OUT/modules")
python3 "$HERE/vmtool.py" initramfs "$OUT/initramfs.cpio" "${specs[@]}"

dtb=""
if [ "$ARCH" = raspi0 ]; then
    # qemu 7.2's raspi0 lacks the ASB block: drop it from the watchdog node
    # (else bcm2835_power_probe oopses); enable the mini UART (uart1) that
    # carries the port's serial line.
    dtb=$OUT/rpi-zero.dtb
    cp "$K/root/usr/lib/linux-image-$KVER/bcm2835-rpi-zero.dtb" "$dtb.tmp"
    fdtput -t x "$dtb.tmp" /soc/watchdog@7e100000 reg 0x7e100000 0x114
    fdtput -t s "$dtb.tmp" /soc/watchdog@7e100000 reg-names pm
    fdtput -t s "$dtb.tmp" /soc/serial@7e215040 status okay
    mv "$dtb.tmp" "$dtb"
fi
cat > "$OUT/guest.json" <<EOJ
{"arch": "$ARCH", "kversion": "$KVERSION", "kver": "$KVER",
 "kernel": "$K/root/boot/vmlinuz-$KVER", "initrd": "$OUT/initramfs.cpio",
 "dtb": "$dtb", "port": "$(cd "$(dirname "$PORT")" && pwd)/$(basename "$PORT")",
 "gpio_sim": $([ -e "$K/mods-$fl/gpio-sim.ko" ] && echo true || echo false)}
EOJ
echo "vm guest $ARCH: $(stat -c %s "$OUT/initramfs.cpio") bytes initramfs, kernel $KVER"
