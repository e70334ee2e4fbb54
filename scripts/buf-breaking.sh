#!/usr/bin/env bash
# Contracts evolve only compatibly. proto/baseline.binpb is the image of the
# last released contracts; every change is checked against it. After a
# release, refresh it with `make proto-baseline` and commit it.
set -euo pipefail
cd "$(dirname "$0")/../proto"
buf breaking --against baseline.binpb
