#!/usr/bin/env bash
# The benchmark scenarios behind docs/benchmarks.md. Each prints its figure
# next to the raw limit measured in the same run. Postgres keeps fsync on
# (RETAIN_TEST_PG_DURABLE=1) and NATS always fsyncs, as in production.
set -euo pipefail
cd "$(dirname "$0")/.."
export RETAIN_TEST_PG_DURABLE=1
bench() { local dir=$1; shift; echo "== (cd $dir && go test -run '^\$' $*)"; (cd "$dir" && go test -run '^$' -timeout 30m "$@"); }
bench platform -bench 'AtomicPublish|ConsumerRunner' -benchtime 50000x ./bus/
bench platform -bench Verify ./auth/
bench services/ingest -bench 'DecodeBatch|NormalizeValidate' ./event/
bench services/ingest -bench GroupCommit -benchtime 1x ./internal/commit/
bench services/ingest -bench Ingest -benchtime 1x .
bench platform -bench Generate ./simulate/
bench services/churnsignal -bench 'Fit|Score' -benchtime 3x ./internal/model/
RETAIN_BENCH_CUSTOMERS=1000000 bench services/metrics -bench 'Queries' -benchtime 30x -timeout 90m .
bench services/metrics -bench 'Consumer' -benchtime 200000x .
bench services/churnsignal -bench RescoreAll -benchtime 3x ./internal/app
# The same at the target size (1M customers, rescore <= 30 s):
RETAIN_BENCH_CUSTOMERS=1000000 bench services/churnsignal -bench RescoreAll -benchtime 3x ./internal/app
bench services/churnsignal -bench Consumer -benchtime 1x .
bench services/campaign -bench 'TriggerEvaluation|TimerFiring|OrderToNotification|PausedBacklog' -benchtime 1x .
# A scheduled audience (win-back) over 1M customers:
RETAIN_BENCH_CUSTOMERS=1000000 bench services/campaign -bench AudiencePass -benchtime 1x .
bench services/notifier -bench 'SMTPSend|PolicyConsumer' -benchtime 20000x .
