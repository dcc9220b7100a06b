#!/bin/busybox sh
# The kernel VM's /init: loads the modules listed in /vm/modules.list (no kmod in the guest, so in
# dependency order), brings up eth0 with the address in /vm/net.conf, then serves the control
# channel on ttyS1: one shell line per request, answered by its output and "VM-END <rc>".
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /var/run /sbin /usr/bin /usr/sbin /etc
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev 2>/dev/null
/bin/busybox --install -s
export PATH=/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin WG_COLOR_MODE=never
exec </dev/console >/dev/console 2>&1
echo "VM-INIT uptime=$(cut -d' ' -f1 /proc/uptime)"
K=$(uname -r)
failed=0
for m in $(cat /vm/modules.list); do
  insmod "/lib/modules/$K/$m" 2>/tmp/insmod.err || grep -q 'File exists' /tmp/insmod.err || { echo "VM-WARN insmod $m: $(cat /tmp/insmod.err)"; failed=$((failed+1)); }
done
echo "VM-MODULES loaded=$(wc -l < /proc/modules) failed=$failed"
. /vm/net.conf
# busybox ash runs its own applets before PATH: the iproute2 tools are called by full path
/usr/local/sbin/ip link set lo up
/usr/local/sbin/ip link set eth0 mtu "${VM_MTU:-1500}" up
/usr/local/sbin/ip addr add "$VM_ADDR" dev eth0
echo "VM-NET-UP uptime=$(cut -d' ' -f1 /proc/uptime)"
cat > /etc/profile.vm <<'PROFILE'
ip() { /usr/local/sbin/ip "$@"; }
tc() { /usr/local/sbin/tc "$@"; }
PROFILE
(
  stty -F /dev/ttyS1 raw -echo 2>/dev/null
  exec 3<>/dev/ttyS1
  . /etc/profile.vm
  # ready only now: what arrives on a serial port nobody has open, or before it is raw, is lost or mangled
  echo "VM-CTL-READY"
  while IFS= read -r line <&3; do
    eval "$line" >&3 2>&1 </dev/null; rc=$?
    echo "VM-END $rc" >&3
  done
) &
while true; do sleep 3600; done
