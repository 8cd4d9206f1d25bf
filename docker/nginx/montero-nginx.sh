#!/bin/sh
# Entry point of the production nginx (nginx:alpine's busybox sh and Debian's dash alike).
#
# nginx must start before any certificate exists (that is how the first Let's Encrypt
# challenge gets answered), so the HTTPS server is switched on here, at start and on
# `montero tls …` reloads, only when a readable certificate pair is mounted:
#   montero-nginx start    decide, write /tmp/montero-nginx/*.conf, exec nginx in the foreground
#   montero-nginx reload   decide again, `nginx -t`, then `nginx -s reload` (old config kept on failure)
# nginx.conf includes /tmp/montero-nginx/server-*.conf inside its server block.
set -eu

CERTS=${MONTERO_CERTS_PATH:-/etc/nginx/certs}
SNIPPETS=${MONTERO_SNIPPETS_PATH:-/etc/nginx/montero}
OUT=${MONTERO_NGINX_GENERATED:-/tmp/montero-nginx}
HTTPS_PORT=${MONTERO_HTTPS_PORT:-443}
# The HTTP->HTTPS redirect names this host, never the client's Host header (issue 21).
SERVER_NAME=${MONTERO_SERVER_NAME:-localhost}
case "$SERVER_NAME" in
    ""|*[!A-Za-z0-9.-]*|-*) echo "montero-nginx: MONTERO_SERVER_NAME='$SERVER_NAME' is not a host name (letters, digits, dots, dashes)" >&2; exit 1 ;;
esac

log() { echo "montero-nginx: $*" >&2; }

# Write the snippets for one mode into $OUT.new, then swap it in.
write_mode() {
    rm -rf "$OUT.new"
    mkdir -p "$OUT.new"
    cp "$SNIPPETS/server-common.conf" "$OUT.new/server-00-common.conf"
    if [ "$1" = https ]; then
        # Browsers must be sent to the published HTTPS port, which tests move off 443.
        suffix=""
        [ "$HTTPS_PORT" = 443 ] || suffix=":$HTTPS_PORT"
        sed -e "s|@HTTPS_PORT_SUFFIX@|$suffix|g" -e "s|@SERVER_NAME@|$SERVER_NAME|g" "$SNIPPETS/server-tls.conf" > "$OUT.new/server-10-tls.conf"
    fi
    # A pin set by a rolling restart survives a TLS reload.
    cp "$OUT"/*-pinned.conf "$OUT.new/" 2>/dev/null || true
    rm -rf "$OUT.old"
    [ ! -d "$OUT" ] || mv "$OUT" "$OUT.old"
    mv "$OUT.new" "$OUT"
}

have_pair() { [ -r "$CERTS/fullchain.pem" ] && [ -s "$CERTS/fullchain.pem" ] && [ -r "$CERTS/privkey.pem" ]; }

configure() {
    if have_pair; then
        write_mode https
        if nginx -t -q 2>/dev/null; then
            log "certificate found: serving HTTP (redirect) and HTTPS on 443"
            return 0
        fi
        log "WARNING: the certificate in $CERTS is not usable by nginx ($(nginx -t 2>&1 | grep -m1 -E "emerg|error" || true)); HTTP only"
    else
        log "no certificate in $CERTS: HTTP only (run \`montero tls self-signed\` or \`montero tls issue\`)"
    fi
    write_mode http
}

case "${1:-start}" in
    start)
        configure
        # compose sets no-new-privileges (security_opt); a swarm cannot (`docker stack deploy` drops it),
        # so it is set here where the image has setpriv (Debian); nginx:alpine has none.
        if grep -q '^NoNewPrivs:[[:space:]]*1' /proc/self/status 2>/dev/null; then
            exec nginx -g 'daemon off;'
        elif command -v setpriv >/dev/null 2>&1; then
            exec setpriv --no-new-privs nginx -g 'daemon off;'
        fi
        log "WARNING: no-new-privileges is not set (no setpriv in this image; on a swarm nothing else can set it)"
        exec nginx -g 'daemon off;'
        ;;
    reload)
        configure
        nginx -t -q
        nginx -s reload
        log "reloaded"
        ;;
    pin)
        # montero-nginx pin IP:PORT…: send traffic only to these replicas (graceful reload;
        # in-flight requests to the others finish), so a replica can be stopped without a
        # single request arriving at it while it shuts down. `unpin` returns to Docker's DNS.
        shift
        [ "$#" -gt 0 ] || { echo "usage: montero-nginx pin IP:PORT..." >&2; exit 2; }
        {
            echo "upstream montero_pinned {"
            for server in "$@"; do echo "    server $server;"; done
            echo "}"
        } > "$OUT/http-pinned.conf"
        echo 'set $app_upstream http://montero_pinned;' > "$OUT/upstream-pinned.conf"
        if ! nginx -t -q; then
            rm -f "$OUT/http-pinned.conf" "$OUT/upstream-pinned.conf"
            exit 1
        fi
        nginx -s reload
        log "pinned to $*"
        ;;
    unpin)
        rm -f "$OUT/http-pinned.conf" "$OUT/upstream-pinned.conf"
        nginx -t -q
        nginx -s reload
        log "unpinned: replicas found through Docker's DNS again"
        ;;
    *)
        echo "usage: montero-nginx start|reload|pin IP:PORT...|unpin" >&2
        exit 2
        ;;
esac
