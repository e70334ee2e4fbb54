package score

import (
	"testing"

	"github.com/retainhq/retain/services/churnsignal/internal/model"
)

// BenchmarkCompute scores a customer with every indicator present, as a
// rescoring pass does for each customer.
func BenchmarkCompute(b *testing.B) {
	params := model.Params{R: 0.25, Alpha: 4.4, A: 0.8, B: 2.4}
	pop := Population{Model: &params, TypicalGapDays: 30, HorizonWeeks: 13}
	f := orders(305, 275, 245, 215, 185, 155, 125, 95)
	f.Tickets = []Ticket{ticket(2, CategoryBillingPricing, -1), ticket(12, 3, 10), ticket(25, 2, 20)}
	f.Answers = []Answer{{Kind: SurveyNPS, Score: 6, AnsweredAt: daysAgo(5)}}
	w := DefaultWeights()
	b.ReportAllocs()
	for b.Loop() {
		Compute(f, pop, w)
	}
}
