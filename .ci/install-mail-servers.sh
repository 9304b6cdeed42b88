#!/usr/bin/env bash
# Installs the real mail servers the end-to-end suite (tests/e2e/) drives: Debian's
# Postfix, Dovecot (IMAP + LMTP) and swaks.  Idempotent; safe beside another job that
# holds the dpkg lock (we wait for it rather than fail).  Starts no daemon: the tests run
# their own instances under a temporary directory.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
PACKAGES=(postfix dovecot-imapd dovecot-lmtpd swaks)
APT=(apt-get -o DPkg::Lock::Timeout=300 -y -qq)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "mail servers already installed: $(postconf -d -h mail_version) / dovecot $(dovecot --version)"
  exit 0
fi

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
mandb_flag=/var/lib/man-db/auto-update
restore_mandb=0
if [ -e "$mandb_flag" ]; then rm -f "$mandb_flag"; restore_mandb=1; fi
"${APT[@]}" update
"${APT[@]}" install --no-install-recommends "${missing[@]}" >/dev/null
[ "$restore_mandb" = 1 ] && touch "$mandb_flag"
echo "installed ${missing[*]} in $(( $(date +%s) - start )) s:" \
     "postfix $(postconf -d -h mail_version), dovecot $(dovecot --version)"
