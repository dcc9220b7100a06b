#!/usr/bin/env bash
# Installs everything veil, its lab and its tests need on a Debian machine (run as root), then
# the npm dependencies (which also builds the TypeScript and the native datapath addon).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
PACKAGES=(iproute2 iputils-ping procps strace tcpdump tshark iperf3 ethtool wireguard-go wireguard-tools python3 python3-scapy openssl make g++ etcd-server etcd-client qemu-system-x86)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# kubectl for the Kubernetes tests (they run it against veil's test API server): Debian's
# kubernetes-client unless a kubectl is already installed (e.g. from pkgs.k8s.io).
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# the kernel the interop tests boot in QEMU, and busybox for its initramfs: downloaded and unpacked, never installed
bash scripts/fetch-kernel-vm.sh
npm ci --no-audit --no-fund
