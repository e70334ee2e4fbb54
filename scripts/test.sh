#!/usr/bin/env bash
# Runs every workspace module's tests verbosely into a log, shows the package
# lines and any failure, and ends with one "N passed, N failed" line counting
# tests and subtests, so a reader (or CI) sees at a glance what ran.
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp -t retain-test-XXXXXX.log)
status=0
for m in $(go work edit -json | sed -n 's/.*"DiskPath": "\(.*\)".*/\1/p'); do
  echo "== test $m"
  (cd "$m" && go test -count=1 -timeout 20m -v ./... "$@") >>"$log" 2>&1 || status=1
done
grep -E '^(ok|FAIL)\s' "$log" || true
if [ "$status" -ne 0 ]; then
  echo "== failures"
  grep -E '^\s*--- FAIL|^panic:|_test\.go:[0-9]+:' "$log" || true
fi
passed=$(grep -cE '^\s*--- PASS' "$log" || true)
failed=$(grep -cE '^\s*--- FAIL' "$log" || true)
skipped=$(grep -cE '^\s*--- SKIP' "$log" || true)
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  echo "a test binary failed outside a test (build error, panic or timeout); full log: $log"
  grep -E -B5 '^FAIL' "$log" | tail -40
  failed=1
fi
echo "full log: $log"
echo "$passed passed, $failed failed, $skipped skipped"
exit "$status"
