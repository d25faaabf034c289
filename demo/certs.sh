#!/bin/sh
# Generates the demo's throwaway TLS material into envoy/certs/: a CA that Envoy trusts for the
# receiver_tls cluster, and a certificate for receiver.local signed by it. Demo use only; the
# files are not committed. Usage: demo/certs.sh [DIR]
set -eu
dir=${1:-envoy/certs}
[ -s "$dir/ca.pem" ] && [ -s "$dir/receiver.pem" ] && [ -s "$dir/receiver-key.pem" ] && exit 0
mkdir -p "$dir"
cd "$dir"
ext=$(mktemp)
trap 'rm -f "$ext" receiver.csr ca.srl' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout ca-key.pem -out ca.pem -days 3650 -subj "/CN=event_hooks demo CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout receiver-key.pem -out receiver.csr -subj "/CN=receiver.local" 2>/dev/null
printf 'subjectAltName=DNS:receiver.local\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' > "$ext"
openssl x509 -req -in receiver.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
  -out receiver.pem -days 825 -extfile "$ext" 2>/dev/null
echo "demo certificates written to $dir"
