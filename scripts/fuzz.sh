#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time and prints executions and
# findings per target. Needs the nightly toolchain and cargo-fuzz
# (`rustup toolchain install nightly && cargo install cargo-fuzz`); not part
# of .ci/run. Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
status=0
for target in "${targets[@]}"; do
  log="$(mktemp)"
  # -rss_limit_mb: a leak or a blow-up is a finding, not a frozen machine.
  if cargo +nightly fuzz run "$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 >"$log" 2>&1; then
    result="clean"
  else
    result="FINDING (see fuzz/artifacts/$target)"
    status=1
  fi
  runs="$(grep -oE 'Done [0-9]+ runs' "$log" | tail -1 || true)"
  echo "$target: ${runs:-no summary} in ${seconds}s: $result"
  [ "$result" = clean ] || tail -30 "$log"
  rm -f "$log"
done
exit $status
