#!/usr/bin/env bash
# Builds the container image: a static tickcast, then `podman build` of Containerfile
# (FROM scratch, COPY only: nothing is pulled).
#
#   scripts/image.sh                        # localhost/tickcast:latest
#   scripts/image.sh --tag localhost/tickcast:test
#   scripts/image.sh --binary-only          # only the static binary and the staged context
#
# The binary: `cargo build --release --target x86_64-unknown-linux-gnu` with
# `-C target-feature=+crt-static`, into its own target directory (target/static), so the
# dynamically linked build in target/release is left alone. The script checks that it has
# no program interpreter and no shared library dependency, then stages the build context in
# target/image/: the binary, etc/passwd and etc/group (the `tickcast` user, uid 10001; made
# here) and etc/nsswitch.conf (deploy/image/). Prints the image's ID last.
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=localhost/tickcast:latest
BUILD_IMAGE=1
while (($#)); do
    case "$1" in
        --tag) TAG=$2; shift ;;
        --binary-only) BUILD_IMAGE=0 ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "image.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

TARGET=x86_64-unknown-linux-gnu
STATIC_DIR=$PWD/target/static
CONTEXT=$PWD/target/image

echo "image.sh: static build (target/static)" >&2
# With an explicit --target, RUSTFLAGS reach only the target's code, not build scripts.
RUSTFLAGS='-C target-feature=+crt-static' CARGO_TARGET_DIR="$STATIC_DIR" \
    cargo build --release --quiet --locked --target "$TARGET" --bin tickcast
BIN=$STATIC_DIR/$TARGET/release/tickcast

# Static means no interpreter and no NEEDED entry: nothing for a scratch image to lack.
if readelf -lW "$BIN" | grep -q 'INTERP'; then
    echo "image.sh: $BIN has a program interpreter: not a static build" >&2
    exit 1
fi
if readelf -dW "$BIN" | grep -q '(NEEDED)'; then
    echo "image.sh: $BIN needs shared libraries:" >&2
    readelf -dW "$BIN" | grep '(NEEDED)' >&2
    exit 1
fi

rm -rf "$CONTEXT"
mkdir -p "$CONTEXT/etc"
install -m 0755 "$BIN" "$CONTEXT/tickcast"
# The image's only users: root (owner of its files) and tickcast, whom it runs as.
printf '%s\n' 'root:x:0:0:root:/:/sbin/nologin' \
    'tickcast:x:10001:10001:tickcast:/:/sbin/nologin' >"$CONTEXT/etc/passwd"
printf '%s\n' 'root:x:0:' 'tickcast:x:10001:' >"$CONTEXT/etc/group"
install -m 0644 deploy/image/nsswitch.conf "$CONTEXT/etc/nsswitch.conf"
chmod 0644 "$CONTEXT/etc/passwd" "$CONTEXT/etc/group"
if ((BUILD_IMAGE == 0)); then
    echo "image.sh: staged $CONTEXT" >&2
    exit 0
fi

if ! command -v podman >/dev/null 2>&1; then
    echo "image.sh: podman is missing (Debian: apt-get install podman)" >&2
    exit 1
fi
echo "image.sh: podman build -t $TAG" >&2
podman build --quiet --format docker --tag "$TAG" -f Containerfile "$CONTEXT"
