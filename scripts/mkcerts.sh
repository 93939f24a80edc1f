#!/bin/sh
# mkcerts.sh [DIR] [rsa] -- a lab PKI made with the openssl command line.
#
# In DIR (default certs/):
#   ca.crt ca.key                 the lab CA (give ca.crt to clients: --cafile)
#   server.crt server.key         CN=localhost, SAN DNS:localhost, IP:127.0.0.1,
#                                 IP:::1 and DNS:<this machine's host name>
#   client.crt client.key         CN=labclient (mutual TLS, use_identity_as_username)
# and, for tests and lab exercises that show refused handshakes:
#   untrusted-ca.crt/.key         a second CA nobody trusts
#   untrusted-client.crt/.key     CN=labclient signed by the untrusted CA
#   expired-client.crt/.key       signed by the lab CA, expired in 2020
#   revoked-client.crt/.key       signed by the lab CA, listed in ca.crl
#   ca.crl                        the lab CA's CRL (crlfile)
#
# Keys are EC P-256 unless the second argument is "rsa" (RSA-2048).
# Existing files are never overwritten: delete a file to make it again.
set -eu

dir=${1:-certs}
kind=${2:-ec}
case $kind in
    ec|rsa) ;;
    *) echo "usage: $0 [DIR] [rsa]" >&2; exit 2 ;;
esac
command -v openssl >/dev/null 2>&1 || { echo "mkcerts: openssl not found" >&2; exit 1; }
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

host=$(hostname 2>/dev/null || uname -n)
case $host in
    ''|localhost|*[!A-Za-z0-9.-]*) hostline= ;;
    *) hostline="DNS.2 = $host" ;;
esac

if [ "$kind" = rsa ]; then
    server_ku="critical, digitalSignature, keyEncipherment"
else
    server_ku="critical, digitalSignature"
fi

cat > "$tmp/openssl.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = $server_ku
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = @alt
[alt]
DNS.1 = localhost
IP.1 = 127.0.0.1
IP.2 = ::1
$hostline
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ca]
default_ca = lab
[lab]
database = $tmp/index.txt
new_certs_dir = $tmp
serial = $tmp/serial
default_md = sha256
default_crl_days = 3650
policy = anything
unique_subject = no
email_in_dn = no
[anything]
organizationName = optional
commonName = supplied
EOF
: > "$tmp/index.txt"
openssl rand -hex 8 > "$tmp/serial"

nmade=0
made() { echo "mkcerts: made $1"; nmade=$((nmade + 1)); }

# Existing files are kept: say so when they are not the kind asked for.
if [ -e "$dir/server.key" ]; then
    if openssl pkey -in "$dir/server.key" -noout -text 2>/dev/null | grep -q "ASN1 OID: prime256v1"; then
        have=ec
    else
        have=rsa
    fi
    [ "$have" = "$kind" ] || echo "mkcerts: $dir/server.key is $have, not $kind: existing files are" \
        "kept (rm -r $dir to make a new $kind PKI)" >&2
fi

# genkey PATH
genkey() {
    [ -e "$1" ] && return 0
    if [ "$kind" = rsa ]; then
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null
    else
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"
    fi
    chmod 600 "$1"
    made "$1"
}

# mkca NAME CN
mkca() {
    genkey "$dir/$1.key"
    [ -e "$dir/$1.crt" ] && return 0
    openssl req -config "$tmp/openssl.cnf" -x509 -new -key "$dir/$1.key" -sha256 -days 3650 \
        -subj "/O=secbroker lab/CN=$2" -extensions ca_ext -out "$dir/$1.crt"
    made "$dir/$1.crt"
}

# mkleaf NAME CN EXT CA
mkleaf() {
    genkey "$dir/$1.key"
    [ -e "$dir/$1.crt" ] && return 0
    openssl req -config "$tmp/openssl.cnf" -new -key "$dir/$1.key" -subj "/O=secbroker lab/CN=$2" \
        -out "$tmp/$1.csr"
    openssl x509 -req -in "$tmp/$1.csr" -CA "$dir/$4.crt" -CAkey "$dir/$4.key" \
        -set_serial "0x$(openssl rand -hex 8)" -days 825 -sha256 \
        -extfile "$tmp/openssl.cnf" -extensions "$3" -out "$dir/$1.crt" 2>/dev/null
    made "$dir/$1.crt"
}

mkca ca "secbroker lab CA"
mkleaf server localhost server_ext ca
mkleaf client labclient client_ext ca

mkca untrusted-ca "untrusted lab CA"
mkleaf untrusted-client labclient client_ext untrusted-ca

# An expired certificate needs explicit dates, which only `openssl ca` takes.
genkey "$dir/expired-client.key"
if [ ! -e "$dir/expired-client.crt" ]; then
    openssl req -config "$tmp/openssl.cnf" -new -key "$dir/expired-client.key" \
        -subj "/O=secbroker lab/CN=expiredclient" -out "$tmp/expired.csr"
    openssl ca -config "$tmp/openssl.cnf" -batch -notext -in "$tmp/expired.csr" \
        -cert "$dir/ca.crt" -keyfile "$dir/ca.key" -extensions client_ext \
        -startdate 20200101000000Z -enddate 20200201000000Z -out "$dir/expired-client.crt" 2>/dev/null
    made "$dir/expired-client.crt"
fi

mkleaf revoked-client revokedclient client_ext ca
if [ ! -e "$dir/ca.crl" ]; then
    openssl ca -config "$tmp/openssl.cnf" -revoke "$dir/revoked-client.crt" \
        -cert "$dir/ca.crt" -keyfile "$dir/ca.key" 2>/dev/null
    openssl ca -config "$tmp/openssl.cnf" -gencrl -cert "$dir/ca.crt" -keyfile "$dir/ca.key" \
        -out "$dir/ca.crl" 2>/dev/null
    made "$dir/ca.crl"
fi
[ "$nmade" -gt 0 ] || echo "mkcerts: $dir/ already has every file (delete one to make it again)"
exit 0
