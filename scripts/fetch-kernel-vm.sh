#!/usr/bin/env bash
# Fetches what the kernel-peer tests boot in QEMU: a stock Debian kernel image (its vmlinuz and
# modules) and busybox-static, each downloaded with `apt-get download` and unpacked into the cache,
# never installed (busybox-static would replace the busybox package). Idempotent.
#   VEIL_KERNEL_VM_CACHE (default /var/cache/veil-kernel-vm), VEIL_KERNEL_VM_PACKAGE (linux-image-cloud-amd64)
set -euo pipefail
CACHE=${VEIL_KERNEL_VM_CACHE:-/var/cache/veil-kernel-vm}
META=${VEIL_KERNEL_VM_PACKAGE:-linux-image-cloud-amd64}
mkdir -p "$CACHE"
cd "$CACHE"
# the meta package names the versioned image package it depends on
image_package() { apt-cache depends "$META" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
PKG=$(image_package)
if [ -z "$PKG" ] || [ ! -f "kernel/${PKG#linux-image-}/boot/vmlinuz-${PKG#linux-image-}" ]; then
  apt-get update -qq   # a download is due: make sure the list names what the mirror has
  PKG=$(image_package)
fi
[ -n "$PKG" ] || { echo "fetch-kernel-vm: apt knows no package $META" >&2; exit 1; }
KVER=${PKG#linux-image-}
if [ ! -f "kernel/$KVER/boot/vmlinuz-$KVER" ]; then
  echo "fetch-kernel-vm: downloading $PKG (unpacked into $CACHE, not installed)"
  rm -rf "kernel/$KVER.tmp" && mkdir -p "kernel/$KVER.tmp"
  (cd "kernel/$KVER.tmp" && apt-get download "$PKG" >/dev/null && dpkg-deb -x ./*.deb . && rm -f ./*.deb)
  mv "kernel/$KVER.tmp" "kernel/$KVER"
fi
if [ ! -x busybox/bin/busybox ]; then
  echo "fetch-kernel-vm: downloading busybox-static (unpacked, not installed)"
  rm -rf busybox.tmp && mkdir -p busybox.tmp
  (cd busybox.tmp && { apt-get download busybox-static >/dev/null 2>&1 || { apt-get update -qq && apt-get download busybox-static >/dev/null; }; } && dpkg-deb -x ./*.deb . && rm -f ./*.deb)
  rm -rf busybox && mv busybox.tmp busybox
fi
echo "$KVER" > kernel/current
