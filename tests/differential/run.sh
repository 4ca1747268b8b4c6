#!/usr/bin/env bash
# Differential check of `pmtr -t` verdicts: ours against the original C pmtr
# on every file of corpus/. Files named valid-* and invalid-* must get the
# same verdict from both; diff-* files are where we deliberately differ, each
# listed with its reason in expected-differences.tsv.
#
#   tests/differential/run.sh [OURS] [ORIGINAL]
#   defaults: target/release/pmtr (built if missing), and the original built
#   by ../shared/reference/build-original.sh into /tmp/pmtr-original.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
ours=${1:-$top/target/release/pmtr}
original=${2:-}
if [ ! -x "$ours" ]; then (cd "$top" && cargo build --release -q --bin pmtr) || exit 2; fi
if [ -z "$original" ]; then
  builder=$top/../shared/reference/build-original.sh
  [ -x "$builder" ] || { echo "no original pmtr: pass its path, or provide $builder" >&2; exit 2; }
  original=$("$builder" | tail -n 1) || exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
printf '%-36s %-8s %-8s %s\n' FILE OURS ORIGINAL RESULT
for conf in "$here"/corpus/*.conf; do
  name=$(basename "$conf" .conf)
  cp "$conf" "$work/$name.conf"
  if "$ours" -t -c "$work/$name.conf" >/dev/null 2>&1; then ours_verdict=valid; else ours_verdict=invalid; fi
  # The original always exits 0; it logs "parse failed" on a bad file.
  if (cd "$work" && timeout 10 "$original" -t -c "$work/$name.conf" 2>&1) | grep -q "parse failed"; then
    original_verdict=invalid
  else
    original_verdict=valid
  fi
  case $name in
    diff-*)
      reason=$(awk -F'\t' -v n="$name" '$1 == n { print $4 }' "$here/expected-differences.tsv")
      want=$(awk -F'\t' -v n="$name" '$1 == n { print $2 "/" $3 }' "$here/expected-differences.tsv")
      if [ "$want" = "$ours_verdict/$original_verdict" ] && [ -n "$reason" ]; then
        result="differs as documented: $reason"
      else
        result="UNEXPECTED (expected-differences.tsv says ${want:-nothing})"; failures=$((failures + 1))
      fi ;;
    *)
      if [ "$ours_verdict" = "$original_verdict" ] && [ "$ours_verdict" = "${name%%-*}" ]; then
        result=same
      else
        result="MISMATCH"; failures=$((failures + 1))
      fi ;;
  esac
  printf '%-36s %-8s %-8s %s\n' "$name" "$ours_verdict" "$original_verdict" "$result"
done
echo "$failures unexpected verdict(s)"
[ "$failures" -eq 0 ]
