#!/usr/bin/env bash
# The one place where the CI commands live. .github/workflows/*.yml run
# `ci/steps.sh STEP [ARG...]` and nothing else; tests/release.rs runs the same
# steps, taken from the workflow files, on this machine. Change a command
# here, never in a workflow.
#
# Steps: toolchain fmt clippy test deps package-checks e2e dist artifact-name
#        tag-check notes same-as-tested sign publish
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

usage() {
    echo "usage: ci/steps.sh toolchain|fmt|clippy|test|deps|package-checks|e2e|dist|artifact-name DIR|tag-check TAG|notes VERSION|same-as-tested DIR SUMS|sign DIR|publish DIR TAG" >&2
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

die() {
    echo "error: $*" >&2
    exit 1
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
    # booted container (tests/e2e/).
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
artifact-name)
    # The name of the CI artifact of DIR (target/dist, one architecture's
    # build): jarvis-supervisor-VERSION-COMMIT-ARCH, e.g.
    # jarvis-supervisor-0.1.0-1a2b3c4-amd64, with the version of Cargo.toml,
    # the first 7 digits of $GITHUB_SHA and the .deb's architecture. Written
    # as name=... to $GITHUB_OUTPUT (the upload step reads it) and printed.
    # DIR must hold everything the artifact is for, since the upload's
    # if-no-files-found only fails when no pattern matches at all: one .deb,
    # one .rpm, a CycloneDX SBOM (*.cdx.json) and SHA256SUMS that matches.
    dir=${1:?usage: ci/steps.sh artifact-name DIR}
    sha=${GITHUB_SHA:-}
    [[ $sha =~ ^[0-9a-f]{40}$ ]] || die "GITHUB_SHA must be the 40-digit commit, got '$sha' (locally: GITHUB_SHA=\$(git rev-parse HEAD))"
    shopt -s nullglob
    debs=("$dir"/*.deb) rpms=("$dir"/*.rpm) sboms=("$dir"/*.cdx.json)
    [ "${#debs[@]}" = 1 ] || die "expected one .deb in $dir, found ${#debs[@]}"
    [ "${#rpms[@]}" = 1 ] || die "expected one .rpm in $dir, found ${#rpms[@]}"
    [ "${#sboms[@]}" -gt 0 ] || die "no CycloneDX SBOM (*.cdx.json) in $dir"
    [ -f "$dir/SHA256SUMS" ] || die "no SHA256SUMS in $dir"
    (cd "$dir" && sha256sum --quiet --strict -c SHA256SUMS) || die "$dir/SHA256SUMS does not match the files"
    # cargo-deb's file name: NAME_VERSION_ARCH.deb.
    arch=${debs[0]##*_}
    arch=${arch%.deb}
    version=$(cargo_version)
    [[ -n $version && -n $arch ]] || die "no version in Cargo.toml or no architecture in ${debs[0]}"
    name="jarvis-supervisor-$version-${sha:0:7}-$arch"
    if [ -n "${GITHUB_OUTPUT:-}" ]; then
        echo "name=$name" >> "$GITHUB_OUTPUT"
    fi
    echo "artifact: $name"
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
same-as-tested)
    # The x86_64 packages in DIR are the bytes the full test run tested: SUMS
    # is the e2e job's target/dist/SHA256SUMS (the builds are reproducible).
    # Only its .deb and .rpm lines count (an SBOM may carry a timestamp);
    # there must be both.
    dir=${1:?usage: ci/steps.sh same-as-tested DIR SUMS}
    sums=${2:?usage: ci/steps.sh same-as-tested DIR SUMS}
    [ -f "$sums" ] || die "no $sums: the e2e job's SHA256SUMS is missing"
    status=0
    checked=()
    while read -r sum name; do
        name=${name#\*}
        case "$name" in
        *.deb | *.rpm) ;;
        *) continue ;;
        esac
        if [ ! -f "$dir/$name" ]; then
            echo "error: $name, tested by the e2e job, is not among the packages in $dir" >&2
            status=1
            continue
        fi
        got=$(sha256sum < "$dir/$name")
        got=${got%% *}
        if [ "$got" != "$sum" ]; then
            echo "error: $dir/$name is not the build that was tested: sha256 $got, the e2e job tested $sum" >&2
            status=1
            continue
        fi
        checked+=("$name")
    done < "$sums"
    for kind in .deb .rpm; do
        if ! printf '%s\n' "${checked[@]}" | grep -qF -- "$kind"; then
            echo "error: no tested $kind matches: $sums names none, or none as built here" >&2
            status=1
        fi
    done
    [ "$status" = 0 ] && echo "the tested bytes: ${checked[*]}"
    exit "$status"
    ;;
sign)
    # DIR holds the packages of every architecture and their SBOMs. Signs
    # each .rpm (rpmsign: a header signature, which covers the payload
    # digest) with the armored secret key in JARVIS_SIGNING_KEY, then writes
    # SHA256SUMS of the .deb, .rpm (as signed) and .cdx.json files and its
    # detached armored signature SHA256SUMS.asc, and checks both with the
    # key's public half. No key, no release.
    dir=${1:?usage: ci/steps.sh sign DIR}
    if [ -z "${JARVIS_SIGNING_KEY:-}" ]; then
        cat >&2 << 'MSG'
error: JARVIS_SIGNING_KEY is not set: a release is never published unsigned.
  Set the repository secret JARVIS_SIGNING_KEY to the release key, an armored
  OpenPGP secret key without a passphrase:
    gpg --armor --export-secret-keys FINGERPRINT | gh secret set JARVIS_SIGNING_KEY
  (or Settings > Secrets and variables > Actions > New repository secret),
  then re-run the release workflow.
MSG
        exit 1
    fi
    shopt -s nullglob
    cd "$dir"
    debs=(*.deb) rpms=(*.rpm) sboms=(*.cdx.json)
    (( ${#debs[@]} > 0 && ${#rpms[@]} > 0 )) || die "no .deb or no .rpm in $dir"
    [ "${#sboms[@]}" -gt 0 ] || die "no CycloneDX SBOM (*.cdx.json) in $dir"
    if ! command -v rpmsign > /dev/null; then
        as_root apt-get update -q
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends rpm
    fi
    export GNUPGHOME
    GNUPGHOME=$(mktemp -d)
    trap 'gpgconf --kill gpg-agent; rm -rf "$GNUPGHOME"' EXIT
    printf '%s\n' "$JARVIS_SIGNING_KEY" | gpg --batch --quiet --import
    fpr=$(gpg --batch --with-colons --list-secret-keys | awk -F: '$1 == "fpr" { print $10; exit }')
    [ -n "$fpr" ] || die "JARVIS_SIGNING_KEY holds no secret key"
    # Debian's and Ubuntu's rpm look for gpg as /usr/bin/gpg2; --batch and
    # no pinentry make a key with a passphrase fail instead of waiting.
    rpmsign --define "__gpg $(command -v gpg)" --define "_gpg_path $GNUPGHOME" \
        --define "_gpg_name $fpr" --define "_gpg_sign_cmd_extra_args --batch --pinentry-mode error" \
        --addsign "${rpms[@]}" < /dev/null
    sha256sum -- "${debs[@]}" "${rpms[@]}" "${sboms[@]}" > SHA256SUMS
    gpg --batch --yes --armor --local-user "$fpr" --detach-sign --output SHA256SUMS.asc SHA256SUMS
    # Check what was signed as a user will: rpm -K with the public key
    # imported into a throwaway rpm database, and gpg --verify.
    gpg --batch --armor --export "$fpr" > "$GNUPGHOME/public.asc"
    mkdir "$GNUPGHOME/rpmdb"
    rpm --dbpath "$GNUPGHOME/rpmdb" --import "$GNUPGHOME/public.asc"
    for r in "${rpms[@]}"; do
        out=$(rpm --dbpath "$GNUPGHOME/rpmdb" -K "$r" 2>&1) || die "rpm -K $r: $out"
        [[ $out == *" signatures OK"* ]] || die "rpm -K $r checked no signature: $out"
    done
    gpg --batch --quiet --verify SHA256SUMS.asc SHA256SUMS 2> /dev/null || die "SHA256SUMS.asc does not verify"
    echo "signed with $fpr: ${#rpms[@]} .rpm and SHA256SUMS (${#debs[@]} .deb, ${#rpms[@]} .rpm, ${#sboms[@]} SBOMs)"
    ;;
publish)
    # DIR is what `ci/steps.sh sign DIR` left: the packages, their SBOMs,
    # SHA256SUMS and SHA256SUMS.asc. It refuses anything else: no signature,
    # a file missing from SHA256SUMS or not matching it, an unsigned .rpm.
    # TAG is vX.Y.Z.
    dir=${1:?usage: ci/steps.sh publish DIR TAG}
    tag=${2:?usage: ci/steps.sh publish DIR TAG}
    notes=$(ci/steps.sh notes "${tag#v}")
    cd "$dir"
    [[ -f SHA256SUMS && -f SHA256SUMS.asc ]] \
        || die "$dir has no SHA256SUMS.asc: run ci/steps.sh sign $dir first (it needs JARVIS_SIGNING_KEY); nothing is published unsigned"
    shopt -s nullglob
    files=(*.deb *.rpm *.cdx.json)
    for f in "${files[@]}"; do
        grep -qxF -- "$(sha256sum -- "$f")" SHA256SUMS || die "$dir/$f is not in SHA256SUMS as it is now: run ci/steps.sh sign $dir again"
    done
    [ "$(wc -l < SHA256SUMS)" = "${#files[@]}" ] || die "SHA256SUMS lists files that are not in $dir"
    for r in *.rpm; do
        sig=$(rpm -qp --qf '%{DSAHEADER:pgpsig}%{RSAHEADER:pgpsig}' "$r" 2> /dev/null) || die "rpm cannot read $dir/$r"
        [ "$sig" != "(none)(none)" ] || die "$dir/$r is not signed: run ci/steps.sh sign $dir first"
    done
    printf '%s\n' "$notes" > NOTES.md
    gh release create "$tag" --verify-tag --title "jarvis-supervisor ${tag#v}" --notes-file NOTES.md "${files[@]}" SHA256SUMS SHA256SUMS.asc
    ;;
*)
    usage
    ;;
esac
