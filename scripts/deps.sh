#!/bin/sh
# deps.sh - install the Debian 12 packages that sluice's build and tests
# need, but only those that are missing (so `make run` / `make test` work on
# a fresh machine and cost nothing on a ready one).
set -e
PKGS="gcc make pkg-config clang libclang-rt-14-dev libevent-dev libssl-dev
libcmocka-dev openssl python3 swaks postfix iproute2 procps
libunbound-dev liblmdb-dev libhiredis-dev dnsmasq-base redis-server postgrey
dovecot-imapd dovecot-pop3d dovecot-lmtpd isync
zlib1g-dev pflogsumm chromium time"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing:$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# Postfix asks how to configure itself; a private test instance needs none.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections 2>/dev/null || true
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends $missing
