#!/usr/bin/env bash
# Offline validation of charts/retain: `helm lint --strict` and
# `helm template` with the default values and with each values-*.yaml.
# Usage: deploy/chart-lint.sh HELM KUBE_VERSION   (make chart-lint passes both)
#
# The chart declares the official NATS chart as an optional dependency.
# Helm refuses to lint or template a chart whose declared dependency is not
# in charts/ (whatever its condition says), and fetching it needs the NATS
# chart repository, which this check must not need. So when charts/ does not
# hold the NATS chart, the chart is linted from a temporary copy without the
# `dependencies:` block: every template and values file of this chart is
# checked; the NATS chart's own manifests are not rendered. After
# `helm dependency build charts/retain` (network), the real chart is linted.
set -euo pipefail
helm=${1:?usage: chart-lint.sh HELM KUBE_VERSION}
kube=${2:?usage: chart-lint.sh HELM KUBE_VERSION}
cd "$(dirname "$0")/.."
src=charts/retain

chart=$src
if ! ls "$src"/charts/nats-*.tgz >/dev/null 2>&1 && [ ! -d "$src/charts/nats" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  cp -r "$src" "$tmp/retain"
  # dependencies: is the last block of Chart.yaml (the chart keeps it there).
  sed -i '/^dependencies:/,$d' "$tmp/retain/Chart.yaml"
  if grep -q '^dependencies:' "$tmp/retain/Chart.yaml" || ! grep -q '^dependencies:' "$src/Chart.yaml"; then
    echo "chart-lint: could not strip the dependencies block of $src/Chart.yaml" >&2
    exit 1
  fi
  chart=$tmp/retain
  echo "chart-lint: the NATS dependency is not fetched (helm dependency build needs network);"
  echo "            linting the chart's own templates without it"
fi

status=0
for values in "" values-dev.yaml values-production.yaml; do
  args=(--kube-version "$kube")
  label="default values"
  if [ -n "$values" ]; then
    args+=(-f "$src/$values")
    label=$values
  fi
  echo "== helm lint --strict ($label)"
  "$helm" lint --strict "$chart" "${args[@]}" || status=1
  echo "== helm template ($label)"
  if out=$("$helm" template retain "$chart" --namespace retain "${args[@]}" 2>&1); then
    echo "$(grep -c '^kind:' <<<"$out") objects"
  else
    echo "$out" >&2
    status=1
  fi
done
exit $status
