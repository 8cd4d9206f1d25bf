#!/usr/bin/env bash
# Build the local base image montero-base:<codename> from Debian packages, for hosts
# that reach no container registry (pulls of python:3.11-slim, redis:7-alpine and
# nginx:alpine fail). One image stands in for all three: it has python3 + venv + pip,
# redis-server and nginx. Point the stack at it with
#   MONTERO_PYTHON_IMAGE / MONTERO_REDIS_IMAGE / MONTERO_NGINX_IMAGE=montero-base:<codename>
# (scripts/setup.sh writes them into .env when it uses this script).
#
# Usage: scripts/bootstrap-images.sh [--force]   (also: montero images bootstrap)
#   The image is left alone when it exists, unless --force.
#   MONTERO_DEBIAN_MIRROR overrides the mirror read from the host's apt configuration.
# Needs root (debootstrap, chroot), about 70 s and 320 MB of disk while it runs.
set -euo pipefail

PACKAGES="python3,python3-venv,python3-pip,redis-server,nginx,sqlite3,netcat-openbsd,ca-certificates"
FORCE=0
for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "bootstrap-images: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

log() { printf '[bootstrap-images] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ -r /etc/os-release ] || die "no /etc/os-release: this script needs a Debian or Ubuntu host"
# shellcheck disable=SC1091
. /etc/os-release
CODENAME="${VERSION_CODENAME:-}"
[ -n "$CODENAME" ] || die "could not read VERSION_CODENAME from /etc/os-release"
IMAGE="${MONTERO_BASE_IMAGE:-montero-base:$CODENAME}"

if [ "$FORCE" = 0 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "$IMAGE already exists (use --force to rebuild)"
    echo "$IMAGE"
    exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "run as root (debootstrap needs it)"
    SUDO="sudo"
fi

# The mirror the host itself uses for its release: deb822 .sources files first,
# then one-line .list entries. Never a hard-coded host name.
find_mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        awk -v suite="$CODENAME" '
            function flush() {
                if (uris != "" && types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ")) { split(uris, u, " "); print u[1]; found = 1; exit }
                uris = ""; suites = ""; types = ""
            }
            /^[[:space:]]*#/ { next }
            /^[[:space:]]*$/ { flush(); next }
            tolower($1) == "uris:"   { $1 = ""; uris = $0; sub(/^ +/, "", uris) }
            tolower($1) == "suites:" { $1 = ""; suites = $0; sub(/^ +/, "", suites) }
            tolower($1) == "types:"  { $1 = ""; types = $0 }
            END { if (!found) flush() }
        ' "$f"
    done | head -n 1
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        # deb [options] URI SUITE COMPONENTS...
        sed -e 's/\[[^]]*\]//' "$f" | awk -v suite="$CODENAME" '$1 == "deb" && $3 == suite { print $2; exit }'
    done | head -n 1
}

MIRROR="${MONTERO_DEBIAN_MIRROR:-$(find_mirror | head -n 1)}"
[ -n "$MIRROR" ] || die "no apt source for '$CODENAME' in /etc/apt; set MONTERO_DEBIAN_MIRROR=<mirror URL>"

if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap"
    $SUDO apt-get install -y --no-install-recommends debootstrap >/dev/null 2>&1 \
        || { $SUDO apt-get update -qq && $SUDO apt-get install -y --no-install-recommends debootstrap >/dev/null; } \
        || die "could not install debootstrap"
fi

ROOTFS="$(mktemp -d /var/tmp/montero-base.XXXXXX)"
cleanup() {
    # A package's postinst might have left a daemon running inside the chroot.
    local pid root
    for pid in $(ls /proc | grep -E '^[0-9]+$'); do
        root="$(readlink "/proc/$pid/root" 2>/dev/null || true)"
        [ "$root" = "$ROOTFS" ] && $SUDO kill "$pid" 2>/dev/null || true
    done
    $SUDO rm -rf --one-file-system "$ROOTFS"
}
trap cleanup EXIT

start=$(date +%s)
log "debootstrap --variant=minbase $CODENAME from $MIRROR (about a minute)"
$SUDO debootstrap --variant=minbase --include="$PACKAGES" "$CODENAME" "$ROOTFS" "$MIRROR" \
    >"$ROOTFS.log" 2>&1 || { tail -n 20 "$ROOTFS.log" >&2; die "debootstrap failed (full log: $ROOTFS.log)"; }
rm -f "$ROOTFS.log"

# Trust the host's extra certificate authorities (a TLS-intercepting proxy's), so
# that pip inside builds based on this image can reach PyPI.
if compgen -G "/usr/local/share/ca-certificates/*" >/dev/null; then
    log "adding the host's CA certificates"
    $SUDO cp -a /usr/local/share/ca-certificates/. "$ROOTFS/usr/local/share/ca-certificates/"
fi
$SUDO chroot "$ROOTFS" update-ca-certificates >/dev/null 2>&1 || log "warning: update-ca-certificates failed"

# Keep the image small: no apt lists or caches, docs or man pages.
$SUDO chroot "$ROOTFS" apt-get clean
$SUDO rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/log/*.log \
    "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/*
# Builds may apt-get install compilers: point the image's apt at the same mirror.
echo "deb $MIRROR $CODENAME main" | $SUDO tee "$ROOTFS/etc/apt/sources.list" >/dev/null

log "importing as $IMAGE"
$SUDO tar -C "$ROOTFS" --numeric-owner -cf - . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    --message "montero-base: debootstrap minbase $CODENAME + $PACKAGES" \
    - "$IMAGE" >/dev/null
log "$IMAGE ready in $(( $(date +%s) - start ))s"
echo "$IMAGE"
