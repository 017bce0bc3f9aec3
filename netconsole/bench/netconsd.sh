#!/usr/bin/env bash
# Builds Meta's netconsd for the side-by-side ingest benchmark, in a
# temporary directory (never inside this repository), with one change: the
# listener socket gets SO_RCVBUFFORCE = $NETCONSD_RCVBUF when that is set,
# so both receivers run with the same receive buffer (netconsd itself never
# sets SO_RCVBUF). Prints the binary's path.
#
#   netconsole/bench/netconsd.sh [SOURCE]   # SOURCE: git URL or checkout
#                                           # (default github.com/facebook/netconsd)
#   NETCONSD=$(netconsole/bench/netconsd.sh) go test -run '^$' -bench Ingest ./netconsole/bench
set -euo pipefail
src=${1:-https://github.com/facebook/netconsd}
out=${NETCONSD_BUILD:-/tmp/netconsd-bench}
if [ -x "$out/netconsd" ]; then echo "$out/netconsd"; exit 0; fi
rm -rf "$out"
git clone -q "$src" "$out" >&2
cd "$out"
grep -q NETCONSD_RCVBUF listener.c || sed -i '/ret = bind(fd, (const struct sockaddr \*)bindaddr/i\
\t{ const char *rb = getenv("NETCONSD_RCVBUF"); int v = rb ? atoi(rb) : 0;\
\t  if (v > 0 \&\& setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, \&v, sizeof(v)))\
\t\tfatal("Couldn'"'"'t set SO_RCVBUFFORCE: %m\\n"); }' listener.c
grep -q '<stdlib.h>' listener.c || sed -i '1i #include <stdlib.h>' listener.c
make netconsd >&2
echo "$out/netconsd"
