#!/usr/bin/env bash
# Enforces the dependency table of docs/architecture.md (from STYLE.md): every `#include "x/..."`
# in src/<component> must name the component itself, common, telemetry, or a component the table
# allows. Prints each violation and exits 1 if there is any.
set -euo pipefail
src=${1:-$(dirname "$0")/../src}
declare -A allow=(
  [common]=""
  [telemetry]=""
  [net]="" [store]="" [ratelimit]="store net" [exec/sandbox]="" [graph]=""
  [audit]="store" [vault]="store audit"
  [llm]="net store"
  [auth]="store net audit"
  [graph/postgres]="graph store"
  [graph/nodes]="graph llm exec/sandbox vault net"
  [control]="store graph audit ratelimit vault"
  [exec/worker]="control graph graph/nodes graph/postgres llm net vault exec/sandbox ratelimit audit store"
  [gateway]="auth control llm net vault ratelimit audit store"
  [app]="*"
)
component_of() {  # src-relative path -> component (longest table key that prefixes it)
  local rel=$1 best=""
  for c in "${!allow[@]}"; do
    if [[ $rel == "$c/"* && ${#c} -gt ${#best} ]]; then best=$c; fi
  done
  echo "$best"
}
bad=0
while IFS= read -r file; do
  rel=${file#"$src"/}
  comp=$(component_of "$rel")
  if [ -z "$comp" ]; then echo "$rel: folder is not in the dependency table"; bad=1; continue; fi
  [ "${allow[$comp]}" = "*" ] && continue
  while IFS= read -r inc; do
    target=$(component_of "$inc")
    [ -z "$target" ] && continue
    case " $comp common telemetry ${allow[$comp]} " in
      *" $target "*) ;;
      *) echo "$rel includes $inc: $comp may not depend on $target"; bad=1 ;;
    esac
  done < <(grep -oE '^#include "[^"]+"' "$file" | sed -E 's/#include "(.*)"/\1/')
done < <(find "$src" -name '*.h' -o -name '*.cc' | sort)
exit $bad
