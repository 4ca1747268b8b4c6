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
# An upgrade hands a running pmtr's jobs to the new binary (SPEC 11.8): a
# pmtr on the package's socket keeps its pid and its job's across a
# reinstall, which runs the postinst as an upgrade.
printf 'job {\n name deb-upgrade-check\n cmd /bin/sleep 86404\n out /dev/null\n}\n' > /etc/pmtr.d/upgrade-check.conf
log=$(mktemp)
/usr/bin/pmtr -F -c /etc/pmtr.conf >"$log" 2>&1 &
pmtr_pid=$!
job_pid() { /usr/bin/pmtr-ctl status deb-upgrade-check 2>/dev/null | awk 'NR == 2 { print $3 }'; }
for _ in $(seq 100); do [ -n "$(job_pid)" ] && [ "$(job_pid)" != "-" ] && break; sleep 0.1; done
before=$(job_pid)
dpkg -i "$deb" >/dev/null
for _ in $(seq 100); do grep -q "adopted job deb-upgrade-check" "$log" && break; sleep 0.1; done
after=$(job_pid)
kill -0 "$pmtr_pid" || { echo "pmtr did not survive the upgrade"; cat "$log"; exit 1; }
grep -q "reexec: handing" "$log" || { echo "the upgrade did not reexec pmtr"; cat "$log"; exit 1; }
[ -n "$before" ] && [ "$before" = "$after" ] || { echo "job pid $before became $after"; cat "$log"; exit 1; }
kill "$pmtr_pid"; wait "$pmtr_pid" || true
rm -f /etc/pmtr.d/upgrade-check.conf "$log"
echo "upgrade by reexec: ok (pmtr $pmtr_pid, job $before kept)"
dpkg --purge pmtr >/dev/null
for file in /usr/bin/pmtr /etc/pmtr.conf /etc/pmtr.d /usr/lib/systemd/system/pmtr.service /etc/systemd/system/multi-user.target.wants/pmtr.service; do
  [ ! -e "$file" ] && [ ! -L "$file" ] || { echo "left after purge: $file"; exit 1; }
done
echo "deb install/purge: ok"
