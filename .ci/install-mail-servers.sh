#!/usr/bin/env bash
# Installs the real mail servers the end-to-end suite (tests/e2e/) drives: Debian's
# Postfix, Dovecot (IMAP + LMTP) and swaks, and Exim beside them; and rspamd, which
# tests/integration/test_rspamd.py starts with its own configuration (tests/rspamd.py;
# the system service is never started, policy-rc.d below says no).  Idempotent and quick
# when everything is there; safe beside another job that holds the dpkg lock (we wait for
# it rather than fail).  Starts no daemon: the tests run their own instances under a
# temporary directory.
#
# Exim cannot be installed beside Postfix (both packages provide mail-transport-agent and
# conflict), so exim4-daemon-light is only unpacked, with `dpkg-deb -x`, into EXIM_ROOT:
# the tests start $EXIM_ROOT/usr/sbin/exim4 with their own configuration file (-C).  The
# libraries it links are installed as ordinary packages, and its compiled-in user
# Debian-exim is created as exim4-base's postinst would (the binary will not start
# without it).  Nothing else of exim4-base/exim4-config is needed.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
EXIM_ROOT=/opt/mailgate-ci/exim
EXIM="$EXIM_ROOT/usr/sbin/exim4"
# exim4-daemon-light's Depends without exim4-base and debconf (apt-cache show).
EXIM_LIBS=(libc6 libcrypt1 libdb5.3 libgnutls-dane0 libgnutls30 libidn12 libidn2-0 libnsl2
           libpcre2-8-0)
PACKAGES=(postfix dovecot-imapd dovecot-lmtpd swaks rspamd adduser "${EXIM_LIBS[@]}")
APT=(apt-get -o DPkg::Lock::Timeout=300 -y -qq)

exim_version() { "$EXIM" -C /dev/null -bV 2>/dev/null | sed -n 's/^Exim version \([^ ]*\).*/\1/p'; }

install_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "mail servers already installed: $(postconf -d -h mail_version) / dovecot $(dovecot --version) / $(rspamd --version | head -n1)"
    return
  fi
  local start
  start=$(date +%s)
  # "No configuration": the package writes no /etc/postfix/main.cf and so never listens
  # on :25 by itself; tests run `postfix -c DIR` with their own files.
  debconf-set-selections <<'PRESEED'
postfix postfix/main_mailer_type select No configuration
postfix postfix/mailname string mailgate-ci.invalid
PRESEED
  # Without systemd the postinst scripts would try to start daemons; policy-rc.d says no.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
  fi
  # Rebuilding the man-db index after the install costs 5-15 s and nothing uses it here.
  local mandb_flag=/var/lib/man-db/auto-update restore_mandb=0
  if [ -e "$mandb_flag" ]; then rm -f "$mandb_flag"; restore_mandb=1; fi
  "${APT[@]}" update
  "${APT[@]}" install --no-install-recommends "${missing[@]}" >/dev/null
  [ "$restore_mandb" = 1 ] && touch "$mandb_flag"
  echo "installed ${missing[*]} in $(( $(date +%s) - start )) s:" \
       "postfix $(postconf -d -h mail_version), dovecot $(dovecot --version)"
}

unpack_exim() {
  if ! getent passwd Debian-exim >/dev/null; then
    adduser --system --group --quiet --home /var/spool/exim4 --no-create-home \
      --disabled-login --force-badname Debian-exim
  fi
  if [ -x "$EXIM" ] && [ -n "$(exim_version)" ]; then
    echo "exim already unpacked: $(exim_version) in $EXIM_ROOT"
    return
  fi
  local start tmp deb
  start=$(date +%s)
  tmp=$(mktemp -d)
  chown _apt "$tmp" 2>/dev/null || true  # apt downloads as _apt where it can
  if ! (cd "$tmp" && apt-get -qq download exim4-daemon-light); then
    "${APT[@]}" update  # an old package list names a version the mirror no longer has
    (cd "$tmp" && apt-get -qq download exim4-daemon-light)
  fi
  deb=$(echo "$tmp"/exim4-daemon-light_*.deb)
  rm -rf "$EXIM_ROOT"
  mkdir -p "$EXIM_ROOT"
  dpkg-deb -x "$deb" "$EXIM_ROOT"
  rm -rf "$tmp"
  if ldd "$EXIM" | grep 'not found'; then
    echo "FATAL: $EXIM misses the libraries above (add them to EXIM_LIBS)" >&2
    exit 1
  fi
  if [ -z "$(exim_version)" ]; then
    "$EXIM" -C /dev/null -bV >&2 || true
    echo "FATAL: the unpacked $EXIM does not run" >&2
    exit 1
  fi
  echo "unpacked $(basename "$deb") into $EXIM_ROOT in $(( $(date +%s) - start )) s: exim $(exim_version)"
}

install_packages
unpack_exim
