#!/usr/bin/env bash
# The suite's final check (CTest `secret_leaks`): no secret a test created (API keys, admin
# tokens, master keys, credential values; listed in <dir>/secrets.txt by the fixture) appears in
# any server log, error response body, /metrics output or CLI stderr collected in <dir>.
# Prints each leak (the file and the first 6 characters of the secret) and exits 1 if any.
set -euo pipefail
dir=${1:?usage: check_leaks.sh EVIDENCE_DIR}
secrets=$dir/secrets.txt
if [ ! -s "$secrets" ]; then echo "no secrets registered in $dir: did the tests run?"; exit 1; fi
shopt -s nullglob
files=("$dir"/*.log "$dir"/*.bodies "$dir"/*.metrics "$dir"/*.stderr)
if [ ${#files[@]} -eq 0 ]; then echo "no evidence collected in $dir"; exit 1; fi
leaks=0
while IFS= read -r s; do
  [ -z "$s" ] && continue
  for f in "${files[@]}"; do
    if grep -qF -- "$s" "$f"; then
      echo "LEAK: a secret starting '${s:0:6}' appears in $(basename "$f")"
      leaks=1
    fi
  done
done < <(sort -u "$secrets")
n=$(sort -u "$secrets" | grep -c .)
echo "checked $n secrets against ${#files[@]} files: $([ $leaks = 0 ] && echo none leaked || echo LEAKS FOUND)"
exit $leaks
