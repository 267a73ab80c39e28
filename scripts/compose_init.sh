#!/usr/bin/env bash
# Prepare docker-compose.yml's inputs: deploy/penpay.env (from deploy/penpay.env.example, or with
# --sandbox from deploy/sandbox.env.example) and deploy/secrets/ (JWT signing key, MySQL passwords,
# Daraja certificate placeholder), with new random secrets. Never overwrites an existing file.
#   bash scripts/compose_init.sh [--sandbox] [--dir DIR]   (DIR: default deploy/)
set -euo pipefail
cd "$(dirname "$0")/.."
template=deploy/penpay.env.example dir=deploy
while [ $# -gt 0 ]; do
  case $1 in
    --sandbox) template=deploy/sandbox.env.example ;;
    --dir) dir=$2; shift ;;
    *) echo "usage: $0 [--sandbox] [--dir DIR]" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$dir/secrets"
chmod 700 "$dir/secrets"
umask 077
random() { head -c "$1" /dev/urandom | base64 | tr -d '\n/+=' | head -c "$2"; }

secrets=$dir/secrets
[ -s "$secrets/mysql-password" ] || random 48 40 > "$secrets/mysql-password"
[ -s "$secrets/mysql-root-password" ] || random 48 40 > "$secrets/mysql-root-password"
[ -s "$secrets/jwt-signing-key.pem" ] || openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 \
  -out "$secrets/jwt-signing-key.pem" 2>/dev/null
# Production: replace with Safaricom's B2C certificate. The sandbox uses the simulator's instead.
[ -e "$secrets/daraja-cert.pem" ] || : > "$secrets/daraja-cert.pem"
# The containers run as uid 10001 and read the secrets as bind-mounted files.
chmod 644 "$secrets"/*

env=$dir/penpay.env
if [ ! -e "$env" ]; then
  sed -e "s|@GENERATED-MYSQL-PASSWORD@|$(cat "$secrets/mysql-password")|" \
      -e "s|@GENERATED-PII-KEY@|k1:$(head -c 32 /dev/urandom | base64)|" \
      -e "s|@GENERATED-CALLBACK-SECRET@|$(random 48 32)|" \
      -e "s|@GENERATED-SMS-REPORT-TOKEN@|$(random 48 32)|" "$template" > "$env"
  echo "wrote $env from $template"
fi
if grep -qE "^PENPAY_[A-Z0-9_]+=$" "$env"; then
  echo "fill in these settings in $env:"; grep -E "^PENPAY_[A-Z0-9_]+=$" "$env" | cut -d= -f1 | sed 's/^/  /'
fi
