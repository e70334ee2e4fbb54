package store

import (
	"testing"
	"time"

	"github.com/retainhq/retain/services/churnsignal/internal/score"
)

func BenchmarkHashReasons(b *testing.B) {
	rs := []score.Reason{
		{Code: score.CodePurchaseOutlook, Contribution: 30, Evidence: score.Evidence{Expected: 1.7, Reference: 3.1, HorizonWeeks: 13, RepeatDays: 7, FirstOrder: time.Now()}},
		{Code: score.CodeOverdue, Contribution: 7, Evidence: score.Evidence{RepeatDays: 7, LastOrder: time.Now(), GapDays: 30.9}},
	}
	b.ReportAllocs()
	for b.Loop() {
		HashReasons(rs)
	}
}
