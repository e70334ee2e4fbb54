package rfm

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	metricsv1 "github.com/retainhq/retain/proto/gen/go/retain/metrics/v1"
)

func TestSegmentOfGrid(t *testing.T) {
	// Rows R=5..1, columns F=1..5, as in the table in SegmentOf's comment.
	const (
		ch = SegmentChampions
		lo = SegmentLoyal
		pl = SegmentPotentialLoyalist
		nw = SegmentNew
		pr = SegmentPromising
		na = SegmentNeedAttention
		as = SegmentAboutToSleep
		ar = SegmentAtRisk
		cl = SegmentCantLoseThem
		hi = SegmentHibernating
		ls = SegmentLost
	)
	grid := [5][5]Segment{
		{nw, pl, pl, ch, ch}, // R=5
		{pr, pl, pl, lo, lo}, // R=4
		{as, as, na, lo, lo}, // R=3
		{hi, hi, ar, ar, cl}, // R=2
		{ls, hi, ar, ar, cl}, // R=1
	}
	seen := map[Segment]bool{}
	for i, row := range grid {
		r := 5 - i
		for j, want := range row {
			f := j + 1
			if got := SegmentOf(r, f); got != want {
				t.Errorf("SegmentOf(R=%d, F=%d) = %s, want %s", r, f, got, want)
			}
			seen[want] = true
		}
	}
	if len(seen) != len(Segments) {
		t.Errorf("grid uses %d segments, want all %d", len(seen), len(Segments))
	}
	for _, s := range Segments {
		if strings.HasPrefix(s.String(), "segment(") {
			t.Errorf("segment %d has no name", int(s))
		}
	}
	if SegmentCantLoseThem.String() != "cant_lose_them" {
		t.Errorf("name %q", SegmentCantLoseThem.String())
	}
}

// TestSegmentsAreTheProtoEnum: the metrics API and the campaign service's
// rfm_segment condition convert by number, so every segment must be the
// enum value of its name, and the enum must have no others.
func TestSegmentsAreTheProtoEnum(t *testing.T) {
	for _, s := range Segments {
		want := "RFM_SEGMENT_" + strings.ToUpper(s.String())
		if got := metricsv1.RFMSegment(s).String(); got != want {
			t.Errorf("segment %d (%s) is %s in the proto, want %s", int(s), s, got, want)
		}
	}
	if n := len(metricsv1.RFMSegment_name); n != len(Segments)+1 {
		t.Errorf("the proto has %d values, want the %d segments and UNSPECIFIED", n, len(Segments))
	}
}

func TestQuintiles(t *testing.T) {
	tests := []struct {
		name   string
		values []int64
		want   []int
	}{
		{"ten distinct values: two per score", []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, []int{1, 1, 2, 2, 3, 3, 4, 4, 5, 5}},
		{"input order does not matter", []int64{10, 1, 9, 2, 8, 3, 7, 4, 6, 5}, []int{5, 1, 5, 1, 4, 2, 4, 2, 3, 3}},
		{"ties share the score of the lowest rank", []int64{1, 1, 1, 1, 1, 1, 2, 2, 3, 4}, []int{1, 1, 1, 1, 1, 1, 4, 4, 5, 5}},
		{"all equal: all score 1", []int64{7, 7, 7}, []int{1, 1, 1}},
		{"one customer scores 1", []int64{42}, []int{1}},
		{"three values", []int64{1, 2, 3}, []int{1, 2, 4}},
		{"none", nil, []int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Quintiles(tt.values)
			if len(got) != len(tt.want) {
				t.Fatalf("%v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("%v, want %v", got, tt.want)
				}
			}
		})
	}
}

// TestScaleScoresOneCustomerByTheRule checks Scale.Score against the rule
// counted by hand, on random populations with heavy ties, and that a value
// outside the population scores where it falls.
func TestScaleScoresOneCustomerByTheRule(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 9))
	for range 300 {
		n := 1 + rng.IntN(60)
		values := make([]int64, n)
		for i := range values {
			values[i] = rng.Int64N(int64(1 + rng.IntN(20)))
		}
		s := NewScale(values)
		if s.Len() != n {
			t.Fatalf("Len %d, want %d", s.Len(), n)
		}
		for _, v := range append(values, -1, 25, values[0]+1) {
			worse := 0
			for _, w := range values {
				if w < v {
					worse++
				}
			}
			want := min(1+5*worse/n, 5)
			if got := s.Score(v); got != want {
				t.Fatalf("Score(%d) over %v = %d, want %d", v, values, got, want)
			}
		}
	}
	if got := NewScale(nil).Score(3); got != 0 {
		t.Fatalf("an empty scale scored %d", got)
	}
	in := []int64{3, 1, 2}
	NewScale(in)
	if in[0] != 3 || in[1] != 1 {
		t.Fatal("NewScale sorted its argument")
	}
}

func TestOrderVersionCompare(t *testing.T) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	v := OrderVersion{At: t0, Customer: "b", TotalMinor: 100, Currency: "EUR"}
	for _, tc := range []struct {
		name  string
		other OrderVersion
		want  int // v.Compare(other)
	}{
		{"the same", v, 0},
		{"earlier wins first", OrderVersion{At: t0.Add(-time.Second), Customer: "z", TotalMinor: 999, Currency: "ZZZ"}, 1},
		{"then the customer, bytewise", OrderVersion{At: t0, Customer: "B", TotalMinor: 100, Currency: "EUR"}, 1},
		{"then the total", OrderVersion{At: t0, Customer: "b", TotalMinor: 200, Currency: "AAA"}, -1},
		{"then the currency", OrderVersion{At: t0, Customer: "b", TotalMinor: 100, Currency: "GBP"}, -1},
	} {
		if got := v.Compare(tc.other); got != tc.want {
			t.Errorf("%s: Compare = %d, want %d", tc.name, got, tc.want)
		}
		if got := tc.other.Compare(v); got != -tc.want {
			t.Errorf("%s: reversed Compare = %d, want %d", tc.name, got, -tc.want)
		}
	}
}
