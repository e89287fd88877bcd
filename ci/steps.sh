#!/usr/bin/env bash
# The one place where the CI commands live. .github/workflows/*.yml run
# `ci/steps.sh STEP [ARG...]` and nothing else; tests/release.rs runs the same
# steps, taken from the workflow files, on this machine. Change a command
# here, never in a workflow.
#
# Steps: toolchain fmt clippy test deps package-checks e2e dist tag-check
#        notes publish
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

usage() {
    echo "usage: ci/steps.sh toolchain|fmt|clippy|test|deps|package-checks|e2e|dist|tag-check TAG|notes VERSION|publish DIR TAG" >&2
    exit 2
}

# Root for apt and containers: as is when root, else sudo keeping the cargo
# and rustup the runner set up, and then giving the runner's user back what
# root wrote into ~/.cargo and target/ (later steps run cargo as that user).
as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
        return
    fi
    local status=0
    sudo --preserve-env=PATH,HOME,CARGO_HOME,RUSTUP_HOME,CARGO_TERM_COLOR,JARVIS_REPO_GPG_KEY,JARVIS_E2E_MIRROR "$@" || status=$?
    sudo chown -R "$(id -u):$(id -g)" "${CARGO_HOME:-$HOME/.cargo}" target 2> /dev/null || true
    return "$status"
}

# The package version in Cargo.toml ([package], not [workspace.package]).
cargo_version() {
    sed -n '/^\[package\]/,/^\[/s/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1
}

# The upstream part of debian/changelog's top entry: "0.1.0" of "(1:0.1.0-1)".
changelog_version() {
    local v
    v=$(sed -n '1s/^[^ ]* (\([^)]*\)).*/\1/p' debian/changelog)
    v=${v#*:}
    echo "${v%-*}"
}

# The text of debian/changelog's entry for VERSION: its lines between the
# header and the " -- " trailer, bullets kept.
changelog_section() {
    awk -v want="$1" '
        /^[^ ].* \(/ { v = $2; gsub(/[()]/, "", v); sub(/^[0-9]+:/, "", v); sub(/-[^-]*$/, "", v); inside = (v == want); next }
        /^ -- / { if (inside) exit; next }
        inside { sub(/^  /, ""); print }
    ' debian/changelog | sed '/./,$!d'
}

step=${1:-}
[ -n "$step" ] || usage
shift

case "$step" in
toolchain)
    # The runner's rustup, on the latest stable (rust-version in Cargo.toml
    # is the floor).
    rustup toolchain install stable --profile minimal --component rustfmt,clippy
    rustup default stable
    ;;
fmt)
    cargo fmt --all -- --check
    ;;
clippy)
    cargo clippy --workspace --all-targets --locked -- -D warnings
    ;;
test)
    cargo test --workspace --locked
    ;;
deps)
    # Debian packages and pinned cargo tools for every later step.
    as_root cargo xtask deps
    ;;
package-checks)
    # Build the packages, then lintian, rpmlint, the shipped file lists and
    # SHA256SUMS (tests/package.rs). systemd-analyze verify and security need
    # the unit installed with its binaries: the e2e step runs them in a
    # booted container (tests/e2e.rs).
    as_root cargo xtask dist
    deb=$(ls target/dist/*.deb)
    rpm=$(ls target/dist/*.rpm)
    JARVIS_DEB=$deb JARVIS_RPM=$rpm as_root cargo test --locked -p jarvis-supervisor --test package -- --ignored
    ;;
e2e)
    # Every layer, the booted containers included; ends with "N passed, N failed".
    as_root cargo xtask test
    ;;
dist)
    as_root cargo xtask dist
    ;;
tag-check)
    tag=${1:?usage: ci/steps.sh tag-check TAG}
    want=${tag#v}
    cargo=$(cargo_version)
    changelog=$(changelog_version)
    status=0
    if [ "$want" != "$cargo" ]; then
        echo "error: tag $tag does not match Cargo.toml's version $cargo" >&2
        status=1
    fi
    if [ "$want" != "$changelog" ]; then
        echo "error: tag $tag does not match debian/changelog's top entry $changelog" >&2
        echo "note: add an entry with: dch -v $want-1" >&2
        status=1
    fi
    [ "$status" = 0 ] && echo "tag $tag matches Cargo.toml and debian/changelog ($want)"
    exit "$status"
    ;;
notes)
    version=${1:?usage: ci/steps.sh notes VERSION}
    text=$(changelog_section "$version")
    if [ -z "$text" ]; then
        echo "error: no entry for $version in debian/changelog" >&2
        exit 1
    fi
    printf '%s\n' "$text"
    ;;
publish)
    # DIR holds the packages of every architecture; TAG is vX.Y.Z.
    dir=${1:?usage: ci/steps.sh publish DIR TAG}
    tag=${2:?usage: ci/steps.sh publish DIR TAG}
    cd "$dir"
    sha256sum -- *.deb *.rpm > SHA256SUMS
    files=(*.deb *.rpm SHA256SUMS)
    if [ -n "${JARVIS_SIGNING_KEY:-}" ]; then
        export GNUPGHOME
        GNUPGHOME=$(mktemp -d)
        trap 'gpgconf --kill gpg-agent; rm -rf "$GNUPGHOME"' EXIT
        printf '%s\n' "$JARVIS_SIGNING_KEY" | gpg --batch --import
        gpg --batch --yes --armor --detach-sign --output SHA256SUMS.asc SHA256SUMS
        files+=(SHA256SUMS.asc)
    else
        echo "notice: JARVIS_SIGNING_KEY is not set: SHA256SUMS is published unsigned" >&2
    fi
    cd - > /dev/null
    ci/steps.sh notes "${tag#v}" > "$dir/NOTES.md"
    (cd "$dir" && gh release create "$tag" --verify-tag --title "jarvis-supervisor ${tag#v}" --notes-file NOTES.md "${files[@]}")
    ;;
*)
    usage
    ;;
esac
