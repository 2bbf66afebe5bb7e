#!/usr/bin/env bash
# Builds the release packages into target/package/:
#   haproxy-autoscaler_VERSION-1_amd64.deb          (cargo-deb, from [package.metadata.deb])
#   haproxy-autoscaler-VERSION-x86_64-linux-musl.tar.gz   (a static binary, the template, the
#                                                    example config, the units, man page, docs)
# On a fresh Debian machine too: installs cargo-deb into target/tools, and for the static build the
# musl target and Debian's musl-tools. `--deb` builds only the .deb (the installation test's
# case). A cold release build takes 12-19 minutes per target on 2 cores; later ones are seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

deb_only=
case "${1:-}" in
    --deb) deb_only=1 ;;
    "") ;;
    *) echo "usage: scripts/package.sh [--deb]" >&2; exit 2 ;;
esac

target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
version=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["packages"][0]["version"])')
out=target/package
rm -rf "$out"
mkdir -p "$out/completions" "$out/man"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# cargo-deb, pinned, into the clone (nothing outside it is assumed or changed).
cargo_deb_version=3.8.0
if [ "$(target/tools/bin/cargo-deb --version 2>/dev/null)" != "cargo-deb $cargo_deb_version" ]; then
    echo "installing cargo-deb $cargo_deb_version into target/tools" >&2
    cargo install --quiet --locked --root target/tools cargo-deb --version "$cargo_deb_version"
fi

echo "building the release binary" >&2
cargo build --release --locked
binary="$target_dir/release/haproxy-autoscaler"

# What the package installs beside the binary, generated from it.
"$binary" man --out-dir "$out/man"
gzip -9n "$out"/man/*.1
"$binary" completions bash > "$out/completions/haproxy-autoscaler"
"$binary" completions zsh > "$out/completions/_haproxy-autoscaler"
"$binary" completions fish > "$out/completions/haproxy-autoscaler.fish"
# The example config, with the shipped template's path instead of one beside the config.
template_line='template = "haproxy.cfg.hbs"                        # Handlebars, strict: beside this file'
packaged_line='template = "/usr/share/haproxy-autoscaler/haproxy.cfg.hbs"   # shipped; to edit it, copy it here'
if [ "$(grep -cxF "$template_line" examples/config.toml)" != 1 ]; then
    echo "error: examples/config.toml has no line '$template_line' to point at the shipped template" >&2
    exit 1
fi
python3 -c 'import sys; text = open(sys.argv[1]).read(); print(text.replace(sys.argv[2], sys.argv[3]), end="")' \
    examples/config.toml "$template_line" "$packaged_line" >"$out/config.toml"

echo "building the .deb" >&2
PATH="$PWD/target/tools/bin:$PATH" cargo deb --no-build --locked --output "$out/" >&2
deb=$(ls "$out"/haproxy-autoscaler_"$version"-*_amd64.deb)
echo "$deb"

[ -z "$deb_only" ] || exit 0

echo "building the static (musl) binary" >&2
musl=x86_64-unknown-linux-musl
rustup target list --installed | grep -qx "$musl" || rustup target add "$musl"
if ! command -v musl-gcc >/dev/null 2>&1; then
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq musl-tools >/dev/null
fi
CC_x86_64_unknown_linux_musl=musl-gcc cargo build --release --locked --target "$musl"
static="$target_dir/$musl/release/haproxy-autoscaler"
if readelf -d "$static" | grep -q NEEDED; then
    echo "error: $static links shared libraries:" >&2
    readelf -d "$static" | grep NEEDED >&2
    exit 1
fi
name="haproxy-autoscaler-$version-x86_64-linux-musl"
staging="$out/$name"
mkdir -p "$staging"
cp "$static" "$staging/"
cp templates/haproxy.cfg.hbs examples/config.toml README.md CHANGELOG.md "$staging/"
cp -r "$out/man" "$staging/"
cp -r "$out/completions" "$staging/"
tar -C "$out" --owner=0 --group=0 -czf "$out/$name.tar.gz" "$name"
rm -rf "$staging"
echo "$out/$name.tar.gz"
