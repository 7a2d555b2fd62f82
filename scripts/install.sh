#!/usr/bin/env bash
# Put dwprov on PATH: build it and install the binary as PREFIX/bin/dwprov (and
# the line-health agent beside it, PREFIX/bin/dwprov-agent, which apply uploads).
#   scripts/install.sh                   # as root: /usr/local/bin/dwprov
#   scripts/install.sh --prefix ~/.local # as a user: ~/.local/bin/dwprov
#   scripts/install.sh --profile dev     # a debug build (faster to build)
#   scripts/install.sh --binary FILE     # install FILE instead of building
# Works as root with or without sudo (cargo is looked for in the invoking
# user's ~/.cargo/bin, as sudo's secure_path hides it); the build runs as the
# user who owns the checkout. `cargo install --path . --root PREFIX` does the
# same from a clean target dir.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/cargo-env.sh
source scripts/cargo-env.sh
if [ "$(id -u)" = 0 ]; then PREFIX=/usr/local; else PREFIX=$HOME/.local; fi
PROFILE=release BINARY=
while [ $# -gt 0 ]; do
    case $1 in
        --prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
        --profile) PROFILE=${2:?--profile needs a name (release, dev)}; shift 2 ;;
        --binary) BINARY=${2:?--binary needs a file}; shift 2 ;;
        -h|--help) sed -n '2,11s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 1 ;;
    esac
done
if [ -z "$BINARY" ]; then
    find_cargo
    case $PROFILE in dev) out=debug ;; *) out=$PROFILE ;; esac
    echo "== building dwprov ($PROFILE profile; a first release build takes a few minutes)"
    "${AS_USER[@]}" "$CARGO" build --profile "$PROFILE" --bin dwprov --bin dwprov-agent
    BINARY=target/$out/dwprov
fi
install -d "$PREFIX/bin"
install -m 0755 "$BINARY" "$PREFIX/bin/dwprov"
# The line-health agent apply uploads to gateways with `health` (found next to dwprov).
if [ -f "$(dirname "$BINARY")/dwprov-agent" ]; then install -m 0755 "$(dirname "$BINARY")/dwprov-agent" "$PREFIX/bin/dwprov-agent"; fi
echo "== installed $PREFIX/bin/dwprov ($("$PREFIX/bin/dwprov" --version))"
case ":$PATH:" in *":$PREFIX/bin:"*) ;; *) echo "note: $PREFIX/bin is not on PATH" ;; esac
