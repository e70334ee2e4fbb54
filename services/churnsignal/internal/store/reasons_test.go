package store

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/retainhq/retain/services/churnsignal/internal/score"
)

// TestHashReasonsCoversEveryField sets each field of a reason's evidence in
// turn: every one must change the hash, or a rescoring would keep a row
// whose sentence changed.
func TestHashReasonsCoversEveryField(t *testing.T) {
	base := []score.Reason{{Code: score.CodeSentiment, Contribution: 12}}
	h0 := HashReasons(base)
	seen := map[int64]string{h0: "base"}
	check := func(name string, rs []score.Reason) {
		t.Helper()
		h := HashReasons(rs)
		if prev, ok := seen[h]; ok {
			t.Errorf("%s hashes like %s", name, prev)
		}
		seen[h] = name
	}
	check("code", []score.Reason{{Code: score.CodeOverdue, Contribution: 12}})
	check("contribution", []score.Reason{{Code: score.CodeSentiment, Contribution: 13}})
	check("two reasons", append(base, score.Reason{Code: score.CodeOverdue, Contribution: 1}))

	var set func(prefix string, v reflect.Value)
	set = func(prefix string, v reflect.Value) {
		for i := range v.NumField() {
			f, name := v.Field(i), prefix+v.Type().Field(i).Name
			switch f.Kind() {
			case reflect.Float64:
				f.SetFloat(1.5)
			case reflect.Int:
				f.SetInt(3)
			case reflect.Bool:
				f.SetBool(true)
			case reflect.Struct:
				if f.Type() == reflect.TypeOf(time.Time{}) {
					f.Set(reflect.ValueOf(time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)))
				} else {
					set(name+".", f)
					continue
				}
			default:
				t.Fatalf("evidence field %s of kind %s: teach HashReasons and this test about it", name, f.Kind())
			}
			check(name, base)
			f.Set(reflect.Zero(f.Type()))
		}
	}
	set("", reflect.ValueOf(&base[0].Evidence).Elem())
	if HashReasons(base) != h0 {
		t.Fatal("hash not back to the base once every field is reset")
	}
}

// TestStoredReasons: stored reasons read back as they were computed, and
// render the same sentence as of any instant; a reason stored before
// evidence was keeps its sentence.
func TestStoredReasons(t *testing.T) {
	asOf := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	rs := []score.Reason{
		{Code: score.CodeOverdue, Contribution: 7, Evidence: score.Evidence{RepeatDays: 7, LastOrder: time.Date(2025, 11, 26, 0, 0, 0, 0, time.UTC), GapDays: 30.9}},
		{Code: score.CodeSentiment, Contribution: 16, Evidence: score.Evidence{NPS: score.SurveyEvidence{Latest: 6, Answers: 1, Mean: 6, At: asOf.Add(-5 * 24 * time.Hour)}}},
	}
	js, err := json.Marshal(Reasons(rs))
	if err != nil {
		t.Fatal(err)
	}
	var back []Reason
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	for i, r := range back {
		if r.Code != rs[i].Code || r.Contribution != rs[i].Contribution || !reflect.DeepEqual(r.Evidence, rs[i].Evidence) {
			t.Fatalf("reason %d read back as %+v from %s", i, r, js)
		}
		for _, at := range []time.Time{asOf, asOf.Add(36 * time.Hour)} {
			if got, want := r.Describe(at), rs[i].Describe(at); got != want {
				t.Errorf("as of %s: %q, computed %q", at, got, want)
			}
		}
	}
	if got := back[0].Describe(asOf.Add(24 * time.Hour)); got != "96 days since the last order, usually orders every 30.9 days" {
		t.Errorf("a day later: %q", got)
	}
	var legacy []Reason
	if err := json.Unmarshal([]byte(`[{"code":"overdue","description":"95 days since the last order","contribution":7}]`), &legacy); err != nil {
		t.Fatal(err)
	}
	if got := legacy[0].Describe(asOf); got != "95 days since the last order" || legacy[0].Contribution != 7 {
		t.Errorf("legacy reason %+v reads %q", legacy[0], got)
	}
}
