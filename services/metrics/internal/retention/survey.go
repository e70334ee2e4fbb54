package retention

import (
	"cmp"
	"fmt"
	"time"
)

// SurveyKind is the scale a survey answer is on.
type SurveyKind int

const (
	// SurveyNPS is the Net Promoter question, scored 0-10.
	SurveyNPS SurveyKind = iota + 1
	// SurveyCSAT is customer satisfaction, scored 1-5.
	SurveyCSAT
)

// Answer is one survey.answered fact. ID is the event id: the same customer
// answering twice gives two answers with two ids, and both count.
type Answer struct {
	ID       string
	Customer CustomerID
	At       time.Time
	Kind     SurveyKind
	Score    int
}

// NPSTally counts NPS answers by class: promoters score 9-10, passives 7-8,
// detractors 0-6.
type NPSTally struct {
	Promoters  int64
	Passives   int64
	Detractors int64
}

// Add counts n answers of one score, as a store summing per-score counters
// does.
func (t *NPSTally) Add(score int, n int64) error {
	switch {
	case score >= 9 && score <= 10:
		t.Promoters += n
	case score >= 7 && score <= 8:
		t.Passives += n
	case score >= 0 && score <= 6:
		t.Detractors += n
	default:
		return fmt.Errorf("nps score %d: must be 0-10", score)
	}
	return nil
}

// Answers is the number of NPS answers.
func (t NPSTally) Answers() int64 { return t.Promoters + t.Passives + t.Detractors }

// NPS is % promoters - % detractors, i.e. (promoters - detractors) / answers
// x 100, from -100 to 100.
func (t NPSTally) NPS() Ratio { return Ratio{Num: t.Promoters - t.Detractors, Den: t.Answers()} }

// CSATTally counts CSAT answers; satisfied are the 4s and 5s.
type CSATTally struct {
	Satisfied int64
	Answers   int64
}

// Add counts n answers of one score.
func (t *CSATTally) Add(score int, n int64) error {
	if score < 1 || score > 5 {
		return fmt.Errorf("csat score %d: must be 1-5", score)
	}
	t.Answers += n
	if score >= 4 {
		t.Satisfied += n
	}
	return nil
}

// CSAT is the share of answers scoring 4 or 5.
func (t CSATTally) CSAT() Ratio { return Ratio{Num: t.Satisfied, Den: t.Answers} }

// SurveyTally is what the survey answers of a period add up to.
type SurveyTally struct {
	NPS  NPSTally
	CSAT CSATTally
	// Ignored counts answers of unknown kind or with an out-of-range score.
	// Ingest rejects those, so a non-zero count means bad stored data.
	Ignored int64
}

// TallySurveys counts the answers given in p. Answers are deduplicated by
// id; when two disagree, the one that sorts first by (Customer, At, Kind,
// Score) wins, so the tally does not depend on arrival order.
func TallySurveys(answers []Answer, p Period) SurveyTally {
	byID := make(map[string]Answer, len(answers))
	for _, a := range answers {
		a.At = a.At.UTC()
		if prev, seen := byID[a.ID]; !seen || compareAnswerVersions(a, prev) < 0 {
			byID[a.ID] = a
		}
	}
	var t SurveyTally
	for _, a := range byID {
		if !p.Contains(a.At) {
			continue
		}
		var err error
		switch a.Kind {
		case SurveyNPS:
			err = t.NPS.Add(a.Score, 1)
		case SurveyCSAT:
			err = t.CSAT.Add(a.Score, 1)
		default:
			err = fmt.Errorf("survey kind %d: unknown", a.Kind)
		}
		if err != nil {
			t.Ignored++
		}
	}
	return t
}

func compareAnswerVersions(a, b Answer) int {
	if c := cmp.Compare(a.Customer, b.Customer); c != 0 {
		return c
	}
	if c := a.At.Compare(b.At); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Kind, b.Kind); c != 0 {
		return c
	}
	return cmp.Compare(a.Score, b.Score)
}
