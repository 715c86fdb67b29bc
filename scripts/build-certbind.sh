#!/usr/bin/env bash
# Build the certbind Mosquitto plugin (config/mosquitto/certbind.c: a client certificate's CN must
# match the MQTT user name). Usage: scripts/build-certbind.sh OUT_DIR -> OUT_DIR/mosquitto_certbind.so
# Needs a C compiler (gcc or cc; $CC if set) and the headers of Debian's mosquitto-dev,
# libmosquitto-dev and libssl-dev; it installs nothing and says which package is missing.
# Idempotent: it rebuilds only when certbind.c or this script is newer than the .so.
set -euo pipefail

die() {
	echo "build-certbind: ERROR: $*" >&2
	exit 1
}
[[ $# -eq 1 ]] || die "usage: $0 OUT_DIR"
src="$(cd "$(dirname "$0")/.." && pwd)/config/mosquitto/certbind.c"
out="$1/mosquitto_certbind.so"

CC=${CC:-$(command -v gcc || command -v cc || true)}
[[ -n $CC ]] && command -v "$CC" >/dev/null || die "no C compiler (gcc or cc); install Debian package gcc"
has_header() { printf '#include <%s>\n' "$1" | "$CC" -E -x c - >/dev/null 2>&1; }
has_header mosquitto_broker.h || die "Mosquitto plugin header mosquitto_broker.h missing; install Debian package mosquitto-dev"
has_header mosquitto.h || die "Mosquitto header mosquitto.h missing; install Debian package libmosquitto-dev"
has_header openssl/x509.h || die "OpenSSL header openssl/x509.h missing; install Debian package libssl-dev"

mkdir -p "$1"
if [[ $out -nt $src && $out -nt $0 ]]; then
	echo "build-certbind: $out is up to date"
	exit 0
fi
"$CC" -Wall -Wextra -Werror -O2 -fPIC -shared -o "$out.tmp" "$src" -lcrypto
mv -f "$out.tmp" "$out"
echo "build-certbind: built $out"
