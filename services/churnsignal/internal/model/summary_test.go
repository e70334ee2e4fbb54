package model

import (
	"math"
	"slices"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	utc := func(y int, m time.Month, d, h int) time.Time { return time.Date(y, m, d, h, 0, 0, 0, time.UTC) }
	tokyo := time.FixedZone("UTC+9", 9*3600)
	end := utc(2024, 3, 29, 12)
	tests := []struct {
		name      string
		purchases []time.Time
		loc       *time.Location
		want      Summary
		ok        bool
	}{
		{"no purchases", nil, nil, Summary{}, false},
		{"only after the end day", []time.Time{utc(2024, 3, 30, 0)}, nil, Summary{}, false},
		{"one purchase", []time.Time{utc(2024, 3, 1, 10)}, nil, Summary{X: 0, Tx: 0, T: 4}, true},
		{"same-day orders are one transaction",
			[]time.Time{utc(2024, 3, 1, 9), utc(2024, 3, 1, 23), utc(2024, 3, 8, 1), utc(2024, 3, 8, 2)},
			nil, Summary{X: 1, Tx: 1, T: 4}, true},
		{"order does not matter",
			[]time.Time{utc(2024, 3, 15, 9), utc(2024, 3, 1, 9), utc(2024, 3, 8, 9)},
			nil, Summary{X: 2, Tx: 2, T: 4}, true},
		{"whole end day belongs to calibration, later days do not",
			[]time.Time{utc(2024, 3, 1, 9), utc(2024, 3, 29, 23), utc(2024, 3, 30, 0)},
			nil, Summary{X: 1, Tx: 4, T: 4}, true},
		{"first purchase on the end day", []time.Time{utc(2024, 3, 29, 1)}, nil, Summary{}, true},
		{"calendar days are the shop's",
			// 20:00 and 23:00 UTC on 03-01 are 05:00 and 08:00 on 03-02 in
			// Tokyo: one day there; 14:00 UTC is still 03-01 there.
			[]time.Time{utc(2024, 3, 1, 14), utc(2024, 3, 1, 20), utc(2024, 3, 1, 23)},
			tokyo, Summary{X: 1, Tx: 1.0 / 7, T: 28.0 / 7}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Summarize(tt.purchases, end, tt.loc)
			if ok != tt.ok || got != tt.want {
				t.Errorf("Summarize = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
			if ok {
				if err := got.Validate(); err != nil {
					t.Errorf("summary does not validate: %v", err)
				}
			}
		})
	}
}

func TestSummaryValidate(t *testing.T) {
	tests := []struct {
		s     Summary
		valid bool
	}{
		{Summary{X: 0, Tx: 0, T: 0}, true},
		{Summary{X: 3, Tx: 2, T: 2}, true},
		{Summary{X: -1, T: 1}, false},
		{Summary{X: 1, Tx: 3, T: 2}, false},
		{Summary{X: 0, Tx: 1, T: 2}, false},
		{Summary{X: 2, Tx: 0, T: 2}, false},
		{Summary{X: 1, Tx: -1, T: 2}, false},
		{Summary{X: 1, Tx: 1, T: math.Inf(1)}, false},
	}
	for _, tt := range tests {
		if err := tt.s.Validate(); (err == nil) != tt.valid {
			t.Errorf("Validate(%+v) = %v, want valid %v", tt.s, err, tt.valid)
		}
	}
}

func TestAggregate(t *testing.T) {
	a, b, c := Summary{X: 1, Tx: 1, T: 5}, Summary{X: 0, T: 3}, Summary{X: 1, Tx: 1, T: 4}
	got := Aggregate([]Summary{a, b, a, c, a, b})
	want := []Group{{b, 2}, {c, 1}, {a, 3}}
	if !slices.Equal(got, want) {
		t.Errorf("Aggregate = %+v, want %+v", got, want)
	}
}
