# shellcheck shell=bash
# Sourced by demo.sh, test.sh and install.sh: find cargo when run as root,
# directly or through sudo. rustup installs Rust per user (~/.cargo/bin),
# which neither root's PATH nor Debian sudo's `secure_path` contains.
#
# find_cargo sets CARGO (the cargo to run) and AS_USER (a command prefix that
# runs a build as the user whose toolchain it is, when that user owns the
# checkout: their target/ and ~/.cargo stay theirs), and exports PATH,
# CARGO_HOME and RUSTUP_HOME for that toolchain.
# shellcheck disable=SC2034  # CARGO and AS_USER are for the sourcing script
find_cargo() {
    AS_USER=()
    if command -v cargo >/dev/null 2>&1; then
        CARGO=$(command -v cargo)
        return 0
    fi
    local user home
    # The invoking user (sudo), then root; then the Docker rust image's place.
    for user in "${SUDO_USER:-}" root; do
        [ -n "$user" ] || continue
        home=$(getent passwd "$user" | cut -d: -f6) || continue
        [ -n "$home" ] && [ -x "$home/.cargo/bin/cargo" ] || continue
        export PATH="$home/.cargo/bin:$PATH"
        export CARGO_HOME="${CARGO_HOME:-$home/.cargo}"
        [ ! -d "$home/.rustup" ] || export RUSTUP_HOME="${RUSTUP_HOME:-$home/.rustup}"
        CARGO="$home/.cargo/bin/cargo"
        if [ "$user" != root ] && [ "$(stat -c %U .)" = "$user" ] && command -v runuser >/dev/null 2>&1 &&
           { [ ! -e target ] || [ "$(stat -c %U target)" = "$user" ]; }; then
            AS_USER=(runuser -u "$user" -- env "HOME=$home" "PATH=$PATH" "CARGO_HOME=$CARGO_HOME"
                     "RUSTUP_HOME=${RUSTUP_HOME:-$home/.rustup}")
        fi
        return 0
    done
    if [ -x /usr/local/cargo/bin/cargo ]; then
        export PATH="/usr/local/cargo/bin:$PATH"
        CARGO=/usr/local/cargo/bin/cargo
        return 0
    fi
    echo "cargo not found (looked on PATH, in ~${SUDO_USER:+$SUDO_USER and ~}root/.cargo/bin, /usr/local/cargo/bin):" \
         "install Rust with rustup (https://rustup.rs) first" >&2
    return 1
}
