#!/bin/sh
# The replicate service's entrypoint: turn MONTERO_OFFSITE_REPOSITORY (restic's s3: form, the
# offsite target of `montero backup --push`) into Litestream's bucket/endpoint, then run it.
# montero_ops/services/replication.py derives the same values on the host (status, restore).
set -eu
repo="${MONTERO_OFFSITE_REPOSITORY:-}"
case "$repo" in
    s3:*) ;;
    "") echo "replicate: MONTERO_OFFSITE_REPOSITORY is not set: set it in .env to an s3: repository (s3:https://host/bucket)" >&2; exit 2 ;;
    *) echo "replicate: MONTERO_OFFSITE_REPOSITORY must be an s3: repository (s3:https://host/bucket) for replication" >&2; exit 2 ;;
esac
rest="${repo#s3:}"
case "$rest" in
    http://* | https://*) scheme="${rest%%://*}"; rest="${rest#*://}" ;;
    *) scheme=https ;;
esac
host="${rest%%/*}"
path="${rest#"$host"}"; path="${path#/}"
bucket="${path%%/*}"
[ -n "$bucket" ] || { echo "replicate: MONTERO_OFFSITE_REPOSITORY names no bucket (s3:https://host/bucket)" >&2; exit 2; }
[ -n "${AWS_ACCESS_KEY_ID:-}" ] && [ -n "${AWS_SECRET_ACCESS_KEY:-}" ] \
    || { echo "replicate: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set in .env" >&2; exit 2; }
export MONTERO_REPLICATE_BUCKET="$bucket"
export MONTERO_REPLICATE_ENDPOINT="${MONTERO_REPLICATION_ENDPOINT:-$scheme://$host}"
export MONTERO_REPLICATE_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
export MONTERO_REPLICATE_PATH="${MONTERO_REPLICATION_PATH:?}"
export MONTERO_REPLICATE_DB="${MONTERO_REPLICATE_DB:-/app/data/mi_sistema.db}"
# Litestream's S3 client refuses AWS_CA_BUNDLE ("unable to add custom RootCAs"); Go reads SSL_CERT_FILE.
unset AWS_CA_BUNDLE
exec litestream replicate -config /etc/montero/litestream.yml "$@"
