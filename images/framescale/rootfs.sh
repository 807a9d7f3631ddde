#!/bin/sh
# Lays out the framescale image's root file system in ROOTFS from BINARY (and ADAPTER, the
# adapter alone, which `framescale adapter` runs when it lies beside framescale: fewer pages of
# code resident): the binaries, the shared libraries they link (at the paths the loader looks for
# them), the system CA bundle (an https:// Prometheus verified against the system's CAs), /tmp,
# and a non-root user 65532.
#
#   images/framescale/rootfs.sh BINARY ROOTFS [ADAPTER]
set -eu
binary=$1 rootfs=$2 adapter=${3:-}
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"
cp "$binary" "$rootfs/usr/local/bin/framescale"
if [ -n "$adapter" ]; then cp "$adapter" "$rootfs/usr/local/bin/framescale-adapter"; fi
ldd "$binary" | awk '/=> \//{print $3} /^[ \t]*\//{print $1}' | while read -r lib; do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
printf 'root:x:0:0:root:/:/sbin/nologin\nframescale:x:65532:65532:framescale:/tmp:/sbin/nologin\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nframescale:x:65532:\n' > "$rootfs/etc/group"
