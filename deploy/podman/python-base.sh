#!/usr/bin/env bash
# A local stand-in for the official python:3.11-slim-bookworm image, for machines that cannot
# reach a public image registry: Debian bookworm (debootstrap, minbase) with Debian's Python
# 3.11, shaped like the official image where deploy/docker/Dockerfile relies on it
# (/usr/local/bin/python3, a pip that may install, groupadd/useradd), imported into podman.
#
#   deploy/podman/python-base.sh TAG [MIRROR]
#
# RECIPE (the Makefile passes this script's sha256) becomes the label org.reviewstream.recipe,
# which tells `make images` whether an existing base is this recipe's.
set -euo pipefail
tag=$1
mirror=${2:-http://deb.debian.org/debian}
podman=${PODMAN:-podman}

root=$(mktemp -d /var/tmp/python-base.XXXXXX)
trap 'rm -rf "$root"' EXIT

debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
    bookworm "$root" "$mirror"

# The official image's interpreter lives in /usr/local/bin; the Dockerfile names it there.
ln -s /usr/bin/python3 "$root/usr/local/bin/python3"
ln -s /usr/bin/python3 "$root/usr/local/bin/python"
# The official image's pip installs system-wide (the builder's `pip install uv`); Debian's
# marks its Python as managed by apt.
rm -f "$root"/usr/lib/python3.*/EXTERNALLY-MANAGED
# This machine's own certificate authorities (a TLS-intercepting egress proxy, for one), so
# that pip and uv reach PyPI from inside the build as they do from the host.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >/dev/null
fi
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/* "$root"/tmp/*

# uv reads SSL_CERT_FILE (its own roots otherwise); the rest mirrors the official image.
tar -C "$root" --numeric-owner -c . | "$podman" import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["python3"]' \
    --change "LABEL org.reviewstream.recipe=${RECIPE:-}" \
    - "$tag"
