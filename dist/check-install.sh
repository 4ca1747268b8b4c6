#!/usr/bin/env bash
# Checks `make install` and `make uninstall` into a scratch DESTDIR: every
# file in place, the unit pointing at the installed pmtr, an existing
# configuration left alone, and uninstall removing all but the config.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
prefix=/opt/pmtr-test
mkdir -p "$dest/etc" && echo "# mine" > "$dest/etc/pmtr.conf"
make -s install DESTDIR="$dest" PREFIX="$prefix" >/dev/null
expect=(
  "$prefix/bin/pmtr" "$prefix/bin/pmtr-ctl" "$prefix/bin/onconnect" "$prefix/bin/pmtr-rptserver"
  "$prefix/share/man/man1/pmtr-rptserver.1" "$prefix/share/man/man1/onconnect.1"
  "$prefix/share/man/man1/pmtr.1" "$prefix/share/man/man1/pmtr-ctl.1"
  "$prefix/share/bash-completion/completions/pmtr" "$prefix/share/zsh/site-functions/_pmtr-ctl"
  "$prefix/share/fish/vendor_completions.d/pmtr.fish" "$prefix/lib/systemd/system/pmtr.service"
)
for file in "${expect[@]}"; do
  [ -e "$dest$file" ] || { echo "missing after install: $file"; exit 1; }
done
grep -q "^ExecStart=$prefix/bin/pmtr -F" "$dest$prefix/lib/systemd/system/pmtr.service" || { echo "unit does not run $prefix/bin/pmtr"; exit 1; }
[ "$(cat "$dest/etc/pmtr.conf")" = "# mine" ] || { echo "install replaced an existing /etc/pmtr.conf"; exit 1; }
"$dest$prefix/bin/pmtr" -t -c "$dest/etc/pmtr.conf" >/dev/null
make -s uninstall DESTDIR="$dest" PREFIX="$prefix" >/dev/null
left=$(find "$dest" -type f ! -path "$dest/etc/pmtr.conf" ! -path "$dest/etc/pmtr.d/*")
[ -z "$left" ] || { echo "left after uninstall: $left"; exit 1; }
[ -e "$dest/etc/pmtr.conf" ] || { echo "uninstall removed the configuration"; exit 1; }
# A fresh install puts an empty configuration that includes the job
# directory, and the directory.
rm "$dest/etc/pmtr.conf"
make -s install DESTDIR="$dest" PREFIX="$prefix" >/dev/null
[ -d "$dest/etc/pmtr.d" ] || { echo "install did not create /etc/pmtr.d"; exit 1; }
grep -q '^include /etc/pmtr.d/\*.conf$' "$dest/etc/pmtr.conf" || { echo "pmtr.conf does not include /etc/pmtr.d"; exit 1; }
# What the installed file means, with its directory where DESTDIR put it.
printf 'job {\n name dropped-in\n cmd /bin/sleep 1\n}\n' > "$dest/etc/pmtr.d/dropped-in.conf"
sed "s|/etc/pmtr.d|$dest/etc/pmtr.d|" "$dest/etc/pmtr.conf" > "$dest/etc/relocated.conf"
"$dest$prefix/bin/pmtr" -t -c "$dest/etc/relocated.conf" | grep -q "configuration ok: 1 job" || { echo "pmtr -t did not read pmtr.d"; exit 1; }
echo "make install/uninstall: ok"
