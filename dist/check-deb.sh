#!/usr/bin/env bash
# Builds the Debian package, installs it on this machine, checks what it
# put in place (programs, config, unit enabled, `pmtr -t`,
# `systemd-analyze verify`), then purges it and checks it is all gone.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || cargo install --locked --quiet cargo-deb
make -s build >/dev/null
deb=$(cargo deb -p pmtr --no-build 2>/dev/null | tail -n 1)
echo "built $deb"
dpkg -i "$deb" >/dev/null
for file in /usr/bin/pmtr /usr/bin/pmtr-ctl /usr/bin/onconnect /usr/bin/pmtr-rptserver /etc/pmtr.conf /etc/pmtr.d \
            /usr/lib/systemd/system/pmtr.service /usr/share/man/man1/pmtr.1; do
  [ -e "$file" ] || { echo "not installed: $file"; exit 1; }
done
[ -L /etc/systemd/system/multi-user.target.wants/pmtr.service ] || { echo "postinst did not enable pmtr.service"; exit 1; }
/usr/bin/pmtr -t
systemd-analyze verify /usr/lib/systemd/system/pmtr.service
echo "unit verified"
dpkg --purge pmtr >/dev/null
for file in /usr/bin/pmtr /etc/pmtr.conf /etc/pmtr.d /usr/lib/systemd/system/pmtr.service /etc/systemd/system/multi-user.target.wants/pmtr.service; do
  [ ! -e "$file" ] && [ ! -L "$file" ] || { echo "left after purge: $file"; exit 1; }
done
echo "deb install/purge: ok"
