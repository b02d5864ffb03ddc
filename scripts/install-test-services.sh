#!/usr/bin/env bash
# Installs the real servers the tests talk to, when missing: Debian's dovecot-imapd (IMAP tests)
# and postgresql (the PostgreSQL store's tests), and Debian's chromium for the browser tests
# (tests/test_browser.py; any chromium or google-chrome already on PATH does). The tests start
# each server themselves on 127.0.0.1 with a temporary configuration (PostgreSQL as a throwaway
# cluster owned by the `postgres` user, since it refuses to run as root), and chromium headless
# with a temporary profile; the packaged services are stopped.
set -euo pipefail
need=()
command -v dovecot >/dev/null 2>&1 || [ -x /usr/sbin/dovecot ] || need+=(dovecot-imapd)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v runuser >/dev/null 2>&1 || need+=(util-linux)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
  || command -v google-chrome >/dev/null 2>&1 || command -v chrome >/dev/null 2>&1 \
  || need+=(chromium)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo -n)
  else
    echo "install-test-services: need ${need[*]} (run as root: apt-get install ${need[*]})" >&2
    exit 1
  fi
fi
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The packaged service is not wanted: tests run their own instance.
if command -v systemctl >/dev/null 2>&1; then
  "${sudo[@]}" systemctl disable --now dovecot >/dev/null 2>&1 || true
  "${sudo[@]}" systemctl disable --now postgresql >/dev/null 2>&1 || true
fi
"${sudo[@]}" pkill -x dovecot >/dev/null 2>&1 || true
if command -v pg_ctlcluster >/dev/null 2>&1; then
  for version in /usr/lib/postgresql/*; do
    "${sudo[@]}" pg_ctlcluster "$(basename "$version")" main stop >/dev/null 2>&1 || true
  done
fi
