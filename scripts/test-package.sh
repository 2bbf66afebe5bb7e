#!/usr/bin/env bash
# The installation test: builds the .deb (scripts/package.sh --deb), installs it with apt-get as
# an operator would, and checks what landed: files and modes, the conffile, the state folder,
# `systemd-analyze verify` on both units, the timer left disabled, the installed binary's --help,
# `check --offline` against the installed example config, `man haproxy-autoscaler`, a run inside
# the service's read-only file system, then that `apt-get remove` keeps the config and the state
# and `purge` removes both. Needs root (or sudo) and a machine without the package installed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}
failures=0
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}
pass() {
    echo "ok: $*"
}
# expect_mode PATH MODE OWNER:GROUP
expect_mode() {
    local actual
    if ! actual=$(stat -c '%a %U:%G' "$1" 2>/dev/null); then
        fail "$1 is missing"
    elif [ "$actual" != "$2 $3" ]; then
        fail "$1 is $actual, expected $2 $3"
    else
        pass "$1 $2 $3"
    fi
}
expect_absent() {
    if [ -e "$1" ]; then fail "$1 $2"; else pass "$1 is gone"; fi
}

if dpkg-query -W -f='${Status}' haproxy-autoscaler 2>/dev/null | grep -qv "not-installed"; then
    echo "error: haproxy-autoscaler is installed on this machine; this test installs and purges it," >&2
    echo "so it runs only where it is not: apt-get purge haproxy-autoscaler first" >&2
    exit 1
fi
deb=$(scripts/package.sh --deb | tail -n 1)
echo "package: $deb ($(du -k "$deb" | cut -f1) KiB)"
dpkg-deb -c "$deb"
dpkg-deb -f "$deb" Package Version Depends Recommends

DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "./$deb" >/dev/null

# Files where the README says they are, with their modes.
expect_mode /usr/bin/haproxy-autoscaler 755 root:root
expect_mode /usr/share/haproxy-autoscaler/haproxy.cfg.hbs 644 root:root
expect_mode /etc/haproxy-autoscaler/config.toml 640 root:root
expect_mode /var/lib/haproxy-autoscaler 700 root:root
expect_mode /usr/share/man/man1/haproxy-autoscaler.1.gz 644 root:root
expect_mode /usr/share/bash-completion/completions/haproxy-autoscaler 644 root:root
expect_mode /usr/share/zsh/vendor-completions/_haproxy-autoscaler 644 root:root
expect_mode /usr/share/fish/vendor_completions.d/haproxy-autoscaler.fish 644 root:root
units=$(dpkg -L haproxy-autoscaler | grep -E '/systemd/system/haproxy-autoscaler\.(service|timer)$' || true)
[ "$(echo "$units" | grep -c .)" = 2 ] || fail "the package installs 2 units, found: $units"
for unit in $units; do expect_mode "$unit" 644 root:root; done
if dpkg-query -W -f='${Conffiles}' haproxy-autoscaler | grep -q '/etc/haproxy-autoscaler/config.toml'; then
    pass "config.toml is a conffile"
else
    fail "config.toml is not a conffile"
fi

# Nothing runs until the operator enables the timer.
if ls /etc/systemd/system/*.wants/haproxy-autoscaler.* >/dev/null 2>&1; then
    fail "the package enabled a unit: $(ls /etc/systemd/system/*.wants/haproxy-autoscaler.*)"
else
    pass "no unit enabled"
fi
# shellcheck disable=SC2086 # $units is a list of paths
if verify=$(systemd-analyze verify $units 2>&1) && [ -z "$verify" ]; then
    pass "systemd-analyze verify accepts both units"
else
    fail "systemd-analyze verify: $verify"
fi
service=$(echo "$units" | grep '\.service$')
exposure=$(systemd-analyze security --offline=true "$service" 2>/dev/null | tail -n 1 || true)
echo "systemd-analyze security: $exposure"

# The installed binary, under cron's environment.
if env -i PATH=/usr/bin:/bin haproxy-autoscaler --help | grep -q '^Usage: haproxy-autoscaler'; then
    pass "--help"
else
    fail "haproxy-autoscaler --help"
fi
if output=$(env -i PATH=/usr/bin:/bin haproxy-autoscaler check --offline 2>&1); then
    pass "check --offline against the installed config: $(echo "$output" | tail -n 1)"
else
    fail "check --offline against the installed config: $output"
fi
# As installed, a run (by hand, or by a timer enabled too early) refuses and changes nothing.
before=$(sha256sum /etc/haproxy/haproxy.cfg 2>/dev/null || true)
status=0
output=$(env -i PATH=/usr/bin:/bin haproxy-autoscaler 2>&1) || status=$?
if [ "$status" -eq 2 ] && echo "$output" | grep -q 'enabled = false' &&
    [ "$(sha256sum /etc/haproxy/haproxy.cfg 2>/dev/null || true)" = "$before" ] &&
    [ -z "$(ls -A /var/lib/haproxy-autoscaler)" ]; then
    pass "a run with the installed config refuses (exit 2) and changes nothing"
else
    fail "a run with the installed config (exit $status): $output"
fi
for page in haproxy-autoscaler haproxy-autoscaler-check haproxy-autoscaler-hosts-add; do
    if env -i PATH=/usr/bin:/bin MANPAGER=cat man "$page" 2>&1 | grep -q "^NAME"; then
        pass "man $page"
    else
        fail "man $page: $(man "$page" 2>&1 | head -n 3)"
    fi
done
if bash -c 'source /usr/share/bash-completion/completions/haproxy-autoscaler && complete -p haproxy-autoscaler' >/dev/null; then
    pass "bash completion loads"
else
    fail "bash completion does not load"
fi

# A run in the service's sandbox: everything read-only but its ReadWritePaths= and its
# StateDirectory=, as ProtectSystem=strict leaves it, and only its CapabilityBoundingSet= (systemd
# is not PID 1 on a test machine, so the test builds that view itself: a mount namespace and
# setpriv). Scratch folders are mounted over the
# real /etc/haproxy and state folder there; the run lists a static pool, renders the shipped
# template, validates it with haproxy -c and installs it. Its config and hosts folder live in
# the scratch /etc/haproxy: the private /tmp hides the rest of a clone under /tmp.
scratch=$(mktemp -d -p "$PWD/target")
trap 'rm -rf "$scratch"' EXIT
writable=$(sed -n 's/^ReadWritePaths=//p' "$service" | tr ' ' '\n' | sed 's/^-//')
state_dir=/var/lib/$(sed -n 's/^StateDirectory=//p' "$service")
mkdir -p "$scratch/etc-haproxy/hosts.d" "$scratch/state"
echo "127.0.0.1:8080" > "$scratch/etc-haproxy/hosts.d/web-1"
cat > "$scratch/etc-haproxy/autoscaler.toml" <<EOF
[state]
path = "$state_dir/state.json"

[haproxy]
config = "/etc/haproxy/haproxy.cfg"
template = "/usr/share/haproxy-autoscaler/haproxy.cfg.hbs"
check_command = ["haproxy", "-c", "-f", "{config}"]
reload_command = ["true"]

[[pool]]
name = "web"
port = 8080
provider = "static"

[pool.static]
dir = "/etc/haproxy/hosts.d"
EOF
# CapabilityBoundingSet=CAP_A CAP_B -> -all,+a,+b for setpriv.
capabilities=$(sed -n 's/^CapabilityBoundingSet=//p' "$service" | tr 'A-Z' 'a-z' | sed 's/cap_/+/g; s/ /,/g')
# shellcheck disable=SC2016 # expanded by the inner shell
sandboxed='
set -euo pipefail
scratch=$1 state_dir=$2 writable=$3 capabilities=$4
mount --make-rprivate /
mount --bind "$scratch/etc-haproxy" /etc/haproxy
mount --bind "$scratch/state" "$state_dir"
for target in $(findmnt -rn -o TARGET | sort -u); do
    case "$target" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;; esac
    mount -o remount,bind,ro "$target"
done
for path in $writable "$state_dir"; do
    [ -e "$path" ] || continue
    mountpoint -q "$path" || mount --bind "$path" "$path"
    mount -o remount,bind,rw "$path"
done
mount -t tmpfs tmpfs /tmp         # PrivateTmp=
mount -t tmpfs tmpfs /var/tmp
if touch /etc/probe 2>/dev/null; then echo "the view is not read-only" >&2; exit 1; fi
cd /                              # a system unit'"'"'s working directory
exec setpriv --bounding-set="-all,$capabilities" --no-new-privs \
    env -i PATH=/usr/bin:/bin haproxy-autoscaler --config /etc/haproxy/autoscaler.toml
'
if run=$(as_root unshare -m -- bash -c "$sandboxed" sandboxed "$scratch" "$state_dir" "$writable" "$capabilities" 2>&1) &&
    grep -q 'server web-1 127.0.0.1:8080' "$scratch/etc-haproxy/haproxy.cfg" 2>/dev/null &&
    [ -s "$scratch/state/state.json" ]; then
    pass "a run in the service's sandbox installed haproxy.cfg and saved its state"
else
    fail "a run in the service's sandbox: $run"
fi

# remove keeps the config and the state; purge removes both.
echo '{"kept": true}' | as_root tee /var/lib/haproxy-autoscaler/state.json >/dev/null
as_root sed -i 's/^# region = "eu-west-1"/region = "eu-west-1"/' /etc/haproxy-autoscaler/config.toml
DEBIAN_FRONTEND=noninteractive as_root apt-get remove -y -qq haproxy-autoscaler >/dev/null
expect_absent /usr/bin/haproxy-autoscaler "is left after remove"
if grep -q '^region = "eu-west-1"' /etc/haproxy-autoscaler/config.toml && [ -f /var/lib/haproxy-autoscaler/state.json ]; then
    pass "remove keeps the edited config and the state"
else
    fail "remove lost the edited config or the state"
fi
DEBIAN_FRONTEND=noninteractive as_root apt-get purge -y -qq haproxy-autoscaler >/dev/null
expect_absent /etc/haproxy-autoscaler "is left after purge"
expect_absent /var/lib/haproxy-autoscaler "is left after purge"

if [ "$failures" -ne 0 ]; then
    echo "$failures check(s) failed" >&2
    exit 1
fi
echo "the package installs, works and uninstalls as documented"
