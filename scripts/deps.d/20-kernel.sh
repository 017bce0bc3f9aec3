#!/usr/bin/env bash
# 20-kernel.sh - fetch and unpack the Debian kernel that the VM tests boot.
#
#   scripts/deps.d/20-kernel.sh [ARCH]      ARCH: amd64 (default)
#
# Downloads linux-image-<ABI>-<ARCH> (the version the linux-image-<ARCH>
# meta-package depends on, or $NETBOOT_KVER) with `apt-get download`, unpacks
# it with `dpkg -x` (nothing is installed), runs `depmod -b` (the .deb ships no
# modules.dep) and writes a description for test/harness.Kernel:
#
#   $CACHE/kernel/<ARCH>/kernel.env   KVER=… VMLINUZ=… MODULES=… ROOT=… DEB=…
#
# CACHE is $NETBOOT_CACHE or /var/cache/netboot-test. Idempotent: when
# kernel.env names an unpacked tree that exists, it does nothing. Other
# architectures (arm64) follow the same shape: same env file, own ARCH dir.
set -euo pipefail

ARCH=${1:-amd64}
CACHE=${NETBOOT_CACHE:-/var/cache/netboot-test}
DIR=$CACHE/kernel/$ARCH
ENV=$DIR/kernel.env
log() { printf '[20-kernel %s] %s\n' "$ARCH" "$*" >&2; }

if [ -s "$ENV" ]; then
  # shellcheck disable=SC1090
  . "$ENV"
  if [ -f "${VMLINUZ:-/nonexistent}" ] && [ -f "${MODULES:-/nonexistent}/modules.dep" ]; then
    log "cached: $KVER ($VMLINUZ)"
    exit 0
  fi
fi

pkgarch=$ARCH
[ "$ARCH" = "$(dpkg --print-architecture)" ] && pkgarch=""

abi_of_meta() {
  apt-cache depends "linux-image-$ARCH${pkgarch:+:$pkgarch}" 2>/dev/null |
    awk '/Depends: linux-image-[0-9]/{sub("linux-image-","",$2); sub(":.*","",$2); print $2; exit}'
}
KVER=${NETBOOT_KVER:-$(abi_of_meta)}
if [ -z "$KVER" ]; then
  log "apt lists lack linux-image-$ARCH; running apt-get update"
  apt-get update -qq
  KVER=$(abi_of_meta)
fi
[ -n "$KVER" ] || { log "cannot determine the kernel ABI of linux-image-$ARCH"; exit 1; }

mkdir -p "$DIR"
pkg="linux-image-$KVER"
deb=$(ls "$DIR"/"$pkg"_*.deb 2>/dev/null | head -1 || true)
if [ -z "$deb" ]; then
  log "downloading $pkg"
  (cd "$DIR" && apt-get download -q -o APT::Sandbox::User=root "$pkg${pkgarch:+:$pkgarch}" 2>&1 | tail -1) ||
    { apt-get update -qq && (cd "$DIR" && apt-get download -q -o APT::Sandbox::User=root "$pkg${pkgarch:+:$pkgarch}"); }
  deb=$(ls "$DIR"/"$pkg"_*.deb | head -1)
fi

ROOT=$DIR/root-$KVER
tmp=$ROOT.tmp.$$
rm -rf "$tmp"
log "unpacking $(basename "$deb")"
dpkg -x "$deb" "$tmp"
depmod -b "$tmp" "$KVER"
rm -rf "$ROOT"
mv "$tmp" "$ROOT"

cat >"$ENV.tmp" <<ENVEOF
KVER=$KVER
ROOT=$ROOT
VMLINUZ=$ROOT/boot/vmlinuz-$KVER
MODULES=$ROOT/lib/modules/$KVER
DEB=$deb
ENVEOF
mv "$ENV.tmp" "$ENV"
log "ready: $KVER in $ROOT"
