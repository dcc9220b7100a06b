#!/usr/bin/env bash
# The whole suite, as `npm test` runs it (after the build): first the unit files side by side, then
# the e2e files one at a time; exits non-zero when either set failed, after running both.
#   Unit files run VEIL_UNIT_CONCURRENCY at once (default 4): they spend most of their time waiting
#   on etcd, child processes and timers, and share nothing machine-wide (ports are picked free,
#   directories are mkdtemp'd, namespaces and links carry the test's pid). Keep it that way: a unit
#   test that binds a fixed port or path breaks this.
#   e2e files each build a lab of namespaces and agents and need the machine to themselves.
#   `scripts/test.sh unit` or `scripts/test.sh e2e` runs one set.
set -uo pipefail
cd "$(dirname "$0")/.."
which=${1:-all}
unit_rc=0 e2e_rc=0
if [ "$which" = all ] || [ "$which" = unit ]; then
  # shellcheck disable=SC2046  # one argument per test file
  node --test --test-concurrency="${VEIL_UNIT_CONCURRENCY:-4}" --test-timeout=300000 \
    $(find dist/test -name '*.test.js' -not -path 'dist/test/e2e/*' | sort)
  unit_rc=$?
fi
if [ "$which" = all ] || [ "$which" = e2e ]; then
  # shellcheck disable=SC2046
  node --test --test-concurrency=1 --test-timeout=300000 $(find dist/test/e2e -name '*.test.js' | sort)
  e2e_rc=$?
fi
echo "# unit files: exit $unit_rc; e2e files: exit $e2e_rc"
[ "$unit_rc" -eq 0 ] && [ "$e2e_rc" -eq 0 ]
