#!/usr/bin/env bash
# Make (or bring up to date) a station's broker credentials: a local CA, the broker's TLS
# certificate, one client certificate per user, random passwords and the Mosquitto password file.
#
# Usage: scripts/make-certs.sh [--demo] [--rotate USER]... DIR [STATION_ID]
#
#   DIR          the station directory, e.g. /etc/swapstation (created if missing)
#   STATION_ID   written into the certificates' subjects (OU), e.g. cq-changshou-01
#   --demo       also create the demo-only `sim` user (the simulator playing every driver)
#   --rotate U   give user U a new password and a new client certificate, and revoke the old
#                certificate (repeatable; `--rotate all` for every user)
#   BROKER_SANS  (environment) extra names of the broker for its certificate, comma-separated,
#                e.g. BROKER_SANS="DNS:broker.station.lan,IP:10.20.0.5" (localhost, 127.0.0.1
#                and ::1 are always in it)
#
# It is idempotent: what exists and is still good is kept (CA, certificates valid for 30 more days
# and matching the CA and names, passwords); only what is missing, expiring, changed or rotated is
# made again. Passwords go to DIR/passwords.env and DIR/env/<user>.env (mode 600) and are never
# printed. A client certificate the script replaces (rotated, expiring, or no longer matching) is
# revoked: it is listed in certs/crl.pem, which the broker checks under mutual TLS. After a
# rotation, reload the broker (systemctl reload mosquitto, or SIGHUP).
#
# What it writes under DIR:
#   ca/ca.key                     CA private key (600). Keep it here or offline, never on clients.
#   ca/index.txt, ca/crlnumber    the CA's record of revoked certificates (openssl ca database).
#   certs/crl.pem                 the certificate revocation list (CRL) the broker checks.
#   certs/ca.crt                  CA certificate: every client verifies the broker with it.
#   certs/server.crt, server.key  the broker's certificate and key.
#   certs/clients/<user>.crt/.key client certificates (CN = user), for mutual TLS.
#   mosquitto/passwd              Mosquitto password file (PBKDF2-SHA512 hashes).
#   passwords.env                 MQTT_PASSWORD_<USER>=... for every user (600).
#   env/<user>.env                SWAPSTATION_MQTT_* variables for that user's service (600),
#                                 e.g. a systemd unit's EnvironmentFile=. With --demo, env/sim.env
#                                 also logs each simulated driver in with its own account
#                                 (SWAPSTATION_MQTT_<DRIVER>_PASSWORD, ..._CERT_FILE, ..._KEY_FILE):
#                                 the broker allows one connection per account.
set -euo pipefail
umask 077

USERS=(controller operator viewer arm bay door rack vehicle safety)
DRIVERS=(arm bay door rack vehicle safety)
DEMO_USERS=(sim)
CA_DAYS=3650
CERT_DAYS=825
# The CRL is remade on every change and whenever it has under 30 days left. It lives as long as
# the CA so that a station whose renewal timer stopped keeps working: an expired CRL would make
# the broker refuse every client certificate under mutual TLS.
CRL_DAYS=$CA_DAYS
RENEW_S=$((30 * 24 * 3600))

say() { printf 'make-certs: %s\n' "$*"; }
die() {
	printf 'make-certs: error: %s\n' "$*" >&2
	exit 1
}
usage() {
	sed -n '5,14p' "$0" | sed 's/^# \{0,1\}//'
	exit "${1:-2}"
}

demo=0
rotate=()
while [[ $# -gt 0 ]]; do
	case "$1" in
	--demo) demo=1 ;;
	--rotate)
		[[ $# -ge 2 ]] || die "--rotate needs a user name"
		rotate+=("$2")
		shift
		;;
	-h | --help) usage 0 ;;
	--) shift && break ;;
	-*) die "unknown option $1 (see --help)" ;;
	*) break ;;
	esac
	shift
done
[[ $# -ge 1 && $# -le 2 ]] || usage 2 >&2
DIR=$1
STATION=${2:-station}
[[ $STATION =~ ^[A-Za-z0-9._-]+$ ]] || die "station id '$STATION' may only contain A-Z a-z 0-9 . _ -"

command -v openssl >/dev/null || die "openssl is not installed (Debian: apt-get install openssl)"
MOSQUITTO_PASSWD=$(command -v mosquitto_passwd || true)
[[ -n $MOSQUITTO_PASSWD ]] || die "mosquitto_passwd is not installed (Debian: apt-get install mosquitto)"

# The broker (after dropping to its own user) must be able to traverse DIR to re-read its
# password file on reload: a new DIR is made world-traversable; secrets inside are mode 600.
[[ -d $DIR ]] || (umask 022 && mkdir -p "$DIR")
DIR=$(cd "$DIR" && pwd -P)
install -d -m 700 "$DIR/ca" "$DIR/certs/clients" "$DIR/env"
install -d -m 755 "$DIR/certs" "$DIR/mosquitto"
chmod 700 "$DIR/certs/clients"

# The broker drops to the `mosquitto` user and re-reads the password file on reload: when we run
# as root on a machine with that user, hand it the broker's secrets.
broker_owner=""
if [[ $(id -u) -eq 0 ]] && id mosquitto >/dev/null 2>&1; then
	broker_owner=mosquitto:mosquitto
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat >"$work/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = ${ENV::CERT_SANS}
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ca]
default_ca = station_ca
[station_ca]
database = ${ENV::CA_DB}/index.txt
crlnumber = ${ENV::CA_DB}/crlnumber
default_md = sha256
default_crl_days = ${ENV::CRL_DAYS}
EOF
export CERT_SANS=unused CA_DB=$DIR/ca CRL_DAYS

serial() { printf '0x%s' "$(openssl rand -hex 16)"; }

# ---- users (checked before anything is made) ---------------------------------------------------
pwfile_env=$DIR/passwords.env
declare -A password=()
if [[ -f $pwfile_env ]]; then
	while IFS= read -r line || [[ -n $line ]]; do
		if [[ $line =~ ^MQTT_PASSWORD_([A-Z0-9_]+)=([A-Za-z0-9_-]+)$ ]]; then
			password[${BASH_REMATCH[1],,}]=${BASH_REMATCH[2]}
		fi
	done <"$pwfile_env"
fi

users=("${USERS[@]}")
if [[ $demo -eq 1 ]] || [[ -n ${password[sim]:-} ]]; then
	users+=("${DEMO_USERS[@]}")
fi
for u in "${!password[@]}"; do # keep users added by hand to passwords.env
	[[ " ${users[*]} " == *" $u "* ]] || users+=("$u")
done
for r in "${rotate[@]+"${rotate[@]}"}"; do
	[[ $r == all || " ${users[*]} " == *" $r "* ]] || die "cannot rotate unknown user '$r' (users: ${users[*]})"
done

# ---- the CA --------------------------------------------------------------------------------
ca_key=$DIR/ca/ca.key
ca_crt=$DIR/certs/ca.crt
if [[ -f $ca_key && -f $ca_crt ]]; then
	say "CA: kept $ca_crt ($(openssl x509 -in "$ca_crt" -noout -enddate))"
elif [[ -f $ca_key || -f $ca_crt ]]; then
	die "only one of $ca_key and $ca_crt exists; restore the other or remove both to make a new CA (every certificate must then be reissued)"
else
	openssl req -config "$work/openssl.cnf" -x509 -new -nodes \
		-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
		-keyout "$work/ca.key" -out "$work/ca.crt" -days "$CA_DAYS" -sha256 \
		-subj "/O=swapstation/OU=$STATION/CN=swapstation $STATION local CA" \
		-extensions ca_ext -set_serial "$(serial)" 2>"$work/err" || {
		cat "$work/err" >&2
		die "could not make the CA"
	}
	chmod 600 "$work/ca.key"
	chmod 644 "$work/ca.crt"
	mv "$work/ca.key" "$ca_key"
	mv "$work/ca.crt" "$ca_crt"
	say "CA: created $ca_crt (valid $CA_DAYS days; its key is $ca_key)"
fi

# ---- revocation (the CA's database and the CRL) ------------------------------------------
[[ -f $DIR/ca/index.txt ]] || : >"$DIR/ca/index.txt"
[[ -f $DIR/ca/crlnumber ]] || echo 1000 >"$DIR/ca/crlnumber"
index_before=$(cat "$DIR/ca/index.txt")

cert_serial() { openssl x509 -in "$1" -noout -serial | cut -d= -f2; }
is_revoked() { # crt
	local serial
	serial=$(cert_serial "$1") || return 1
	awk -F'\t' -v s="$serial" '$1 == "R" && toupper($4) == toupper(s) { found = 1 } END { exit !found }' \
		"$DIR/ca/index.txt"
}
revoke() { # crt why: a certificate of our CA that is being replaced goes on the CRL
	local crt=$1 why=$2
	[[ -f $crt ]] || return 0
	openssl verify -CAfile "$ca_crt" "$crt" >/dev/null 2>&1 || return 0 # not ours (old CA): moot
	! is_revoked "$crt" || return 0
	openssl ca -config "$work/openssl.cnf" -keyfile "$ca_key" -cert "$ca_crt" \
		-revoke "$crt" -crl_reason "$why" >/dev/null 2>"$work/err" || {
		cat "$work/err" >&2
		die "could not revoke $crt"
	}
	say "revoked: $(openssl x509 -in "$crt" -noout -subject) (serial $(cert_serial "$crt"), $why)"
}

# A certificate is kept if it verifies against our CA, is not revoked, is valid 30 more days and
# (for the server) was made for the same names.
cert_is_good() { # crt key [sanfile sans]
	local crt=$1 key=$2
	[[ -f $crt && -f $key ]] || return 1
	openssl verify -CAfile "$ca_crt" "$crt" >/dev/null 2>&1 || return 1
	openssl x509 -in "$crt" -noout -checkend "$RENEW_S" >/dev/null 2>&1 || return 1
	! is_revoked "$crt" || return 1
	if [[ $# -eq 4 ]]; then
		[[ -f $3 && $(cat "$3") == "$4" ]] || return 1
	fi
	return 0
}

issue() { # name subject extensions crt key
	local name=$1 subject=$2 ext=$3 crt=$4 key=$5
	openssl req -config "$work/openssl.cnf" -new -nodes \
		-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
		-keyout "$work/$name.key" -out "$work/$name.csr" -subj "$subject" 2>"$work/err" &&
		openssl x509 -req -in "$work/$name.csr" -CA "$ca_crt" -CAkey "$ca_key" \
			-set_serial "$(serial)" -days "$CERT_DAYS" -sha256 \
			-extfile "$work/openssl.cnf" -extensions "$ext" -out "$work/$name.crt" 2>"$work/err" || {
		cat "$work/err" >&2
		die "could not issue the certificate for $name"
	}
	chmod 600 "$work/$name.key"
	chmod 644 "$work/$name.crt"
	mv "$work/$name.key" "$key"
	mv "$work/$name.crt" "$crt"
}

# ---- the broker's certificate ----------------------------------------------------------------
sans="DNS:localhost,IP:127.0.0.1,IP:::1"
if [[ -n ${BROKER_SANS:-} ]]; then
	sans="$sans,${BROKER_SANS// /}"
fi
server_crt=$DIR/certs/server.crt
server_key=$DIR/certs/server.key
if cert_is_good "$server_crt" "$server_key" "$DIR/certs/server.sans" "$sans"; then
	say "server certificate: kept ($sans)"
else
	CERT_SANS=$sans issue server "/O=swapstation/OU=$STATION/CN=swapstation $STATION broker" \
		server_ext "$server_crt" "$server_key"
	printf '%s\n' "$sans" >"$DIR/certs/server.sans"
	chmod 644 "$DIR/certs/server.sans"
	say "server certificate: issued for $sans (valid $CERT_DAYS days)"
fi
if [[ -n $broker_owner ]]; then
	chown "$broker_owner" "$server_key"
fi

# ---- passwords ---------------------------------------------------------------------------------
new_password() { openssl rand -base64 48 | tr -dc 'A-Za-z0-9' | head -c 32; }

rot=" ${rotate[*]:-} "
changed=0
for u in "${users[@]}"; do
	if [[ -z ${password[$u]:-} ]]; then
		password[$u]=$(new_password)
		say "password: generated for $u"
		changed=1
	elif [[ $rot == *" $u "* || $rot == *" all "* ]]; then
		password[$u]=$(new_password)
		say "password: rotated for $u"
		changed=1
	fi
done
[[ -z ${password[sim]:-} || $demo -eq 1 ]] ||
	say "note: the demo-only user 'sim' has a password here; remove its line from passwords.env and rerun on a real station"

{
	printf '# swapstation MQTT passwords, made by scripts/make-certs.sh. Secret: keep mode 600.\n'
	for u in "${users[@]}"; do
		printf 'MQTT_PASSWORD_%s=%s\n' "${u^^}" "${password[$u]}"
	done
} >"$work/passwords.env"
if ! cmp -s "$work/passwords.env" "$pwfile_env" 2>/dev/null; then
	mv "$work/passwords.env" "$pwfile_env"
	changed=1
fi
chmod 600 "$pwfile_env"

# The Mosquitto password file, rebuilt from passwords.env when a password or the user list
# changed. The password goes through stdin, not argv (mosquitto_passwd -b would show it in ps).
pwfile=$DIR/mosquitto/passwd
listed=$(cut -d: -f1 "$pwfile" 2>/dev/null | sort | tr '\n' ' ' || true)
wanted=$(printf '%s\n' "${users[@]}" | sort | tr '\n' ' ')
if [[ $changed -eq 1 || ! -f $pwfile || $listed != "$wanted" ]]; then
	: >"$work/passwd"
	for u in "${users[@]}"; do
		printf '%s\n%s\n' "${password[$u]}" "${password[$u]}" |
			"$MOSQUITTO_PASSWD" "$work/passwd" "$u" >/dev/null 2>"$work/err" || {
			cat "$work/err" >&2
			die "mosquitto_passwd failed for $u"
		}
	done
	chmod 600 "$work/passwd"
	mv "$work/passwd" "$pwfile"
	say "password file: wrote $pwfile (${#users[@]} users); reload the broker if it is running"
else
	say "password file: kept $pwfile (${#users[@]} users)"
fi
if [[ -n $broker_owner ]]; then
	chown "$broker_owner" "$pwfile"
fi

# ---- client certificates and per-user environment files -----------------------------------
for u in "${users[@]}"; do
	crt=$DIR/certs/clients/$u.crt
	key=$DIR/certs/clients/$u.key
	if [[ $rot != *" $u "* && $rot != *" all "* ]] && cert_is_good "$crt" "$key"; then
		kept=1
	else
		revoke "$crt" superseded
		issue "client-$u" "/O=swapstation/OU=$STATION/CN=$u" client_ext "$crt" "$key"
		kept=0
	fi
	{
		printf '# swapstation MQTT credentials of user %s, made by scripts/make-certs.sh.\n' "$u"
		printf 'SWAPSTATION_MQTT_USERNAME=%s\n' "$u"
		printf 'SWAPSTATION_MQTT_PASSWORD=%s\n' "${password[$u]}"
		printf 'SWAPSTATION_MQTT_CA_FILE=%s\n' "$ca_crt"
		printf 'SWAPSTATION_MQTT_CERT_FILE=%s\n' "$crt"
		printf 'SWAPSTATION_MQTT_KEY_FILE=%s\n' "$key"
		if [[ $u == sim ]]; then
			printf '# The simulated drivers, each with its own account (one connection per account).\n'
			for d in "${DRIVERS[@]}"; do
				printf 'SWAPSTATION_MQTT_%s_PASSWORD=%s\n' "${d^^}" "${password[$d]}"
				printf 'SWAPSTATION_MQTT_%s_CERT_FILE=%s\n' "${d^^}" "$DIR/certs/clients/$d.crt"
				printf 'SWAPSTATION_MQTT_%s_KEY_FILE=%s\n' "${d^^}" "$DIR/certs/clients/$d.key"
			done
		fi
	} >"$work/$u.env"
	chmod 600 "$work/$u.env"
	cmp -s "$work/$u.env" "$DIR/env/$u.env" || mv "$work/$u.env" "$DIR/env/$u.env"
	[[ $kept -eq 1 ]] && say "client certificate: kept $u" || say "client certificate: issued $crt"
done

# ---- the CRL ---------------------------------------------------------------------------
crl=$DIR/certs/crl.pem
crl_fresh() {
	[[ -f $crl ]] || return 1
	openssl crl -in "$crl" -noout -verify -CAfile "$ca_crt" >/dev/null 2>&1 || return 1
	local next
	next=$(openssl crl -in "$crl" -noout -nextupdate | cut -d= -f2) || return 1
	(($(date -d "$next" +%s) - $(date +%s) > RENEW_S))
}
if [[ $(cat "$DIR/ca/index.txt") != "$index_before" ]] || ! crl_fresh; then
	openssl ca -config "$work/openssl.cnf" -keyfile "$ca_key" -cert "$ca_crt" \
		-gencrl -out "$work/crl.pem" 2>"$work/err" || {
		cat "$work/err" >&2
		die "could not make the CRL"
	}
	chmod 644 "$work/crl.pem"
	mv "$work/crl.pem" "$crl"
	say "CRL: wrote $crl ($(grep -c '^R' "$DIR/ca/index.txt" || true) revoked); reload the broker if it is running"
else
	say "CRL: kept $crl"
fi

say "done: $DIR (users: ${users[*]})"
