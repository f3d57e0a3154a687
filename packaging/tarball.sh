#!/usr/bin/env bash
# Portable tarball: circuitdiff-<version>-<target>.tar.gz in target/dist/ with
#   bin/circuitdiff, share/circuitdiff/{zoo,demo}, share/applications/circuitdiff.desktop,
#   share/icons/hicolor/*/apps/circuitdiff.*, share/doc/circuitdiff/{LICENSE-*,README.md}
# The binary finds its data at ../share/circuitdiff, so the tree runs from wherever it is
# unpacked, and `cp -r` of its folders into /usr/local or ~/.local is an install.
# usage: packaging/tarball.sh [--profile NAME]   (default: release; extra args go to cargo build)
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=release
if [ "${1:-}" = "--profile" ]; then PROFILE=$2; shift 2; fi
DIR_NAME=$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")

cargo build --locked --profile "$PROFILE" --bin circuitdiff "$@"
VERSION=$(cargo pkgid | sed 's/.*[@#]//')
TARGET=$(rustc -vV | sed -n 's/^host: //p')
NAME=circuitdiff-$VERSION-$TARGET
STAGE=target/dist/$NAME
rm -rf "$STAGE"
mkdir -p "$STAGE/bin" "$STAGE/share/circuitdiff" "$STAGE/share/applications" \
    "$STAGE/share/icons/hicolor/scalable/apps" "$STAGE/share/doc/circuitdiff"

install -m 755 "target/$DIR_NAME/circuitdiff" "$STAGE/bin/"
strip "$STAGE/bin/circuitdiff" 2>/dev/null || true
for data in zoo demo; do
    [ -d "assets/$data" ] || { echo "tarball: assets/$data is missing" >&2; exit 1; }
    cp -r "assets/$data" "$STAGE/share/circuitdiff/"
done
install -m 644 packaging/circuitdiff.desktop "$STAGE/share/applications/"
install -m 644 assets/icon.svg "$STAGE/share/icons/hicolor/scalable/apps/circuitdiff.svg"
for px in 64 128 256; do
    mkdir -p "$STAGE/share/icons/hicolor/${px}x${px}/apps"
    install -m 644 "assets/icon-$px.png" "$STAGE/share/icons/hicolor/${px}x${px}/apps/circuitdiff.png"
done
install -m 644 LICENSE-MIT LICENSE-APACHE README.md "$STAGE/share/doc/circuitdiff/"

tar -C target/dist -czf "target/dist/$NAME.tar.gz" "$NAME"
echo "target/dist/$NAME.tar.gz"
