package model

import (
	"fmt"
	"math"
)

// Params are the four BG/NBD parameters, with time in weeks.
type Params struct {
	// R and Alpha are the shape and rate of the Gamma distribution of purchase
	// rates λ across customers: the mean rate is R/Alpha purchases a week.
	R, Alpha float64
	// A and B are the Beta distribution of the dropout probability p after a
	// purchase: the mean is A/(A+B).
	A, B float64
}

// Validate reports whether all four parameters are finite and positive.
func (p Params) Validate() error {
	for _, f := range []struct {
		name string
		v    float64
	}{{"r", p.R}, {"alpha", p.Alpha}, {"a", p.A}, {"b", p.B}} {
		if !(f.v > 0) || math.IsInf(f.v, 1) {
			return fmt.Errorf("bg/nbd parameter %s = %v: must be finite and > 0", f.name, f.v)
		}
	}
	return nil
}

func (p Params) logs() [4]float64 {
	return [4]float64{math.Log(p.R), math.Log(p.Alpha), math.Log(p.A), math.Log(p.B)}
}

func paramsFromLogs(l []float64) Params {
	return Params{R: math.Exp(l[0]), Alpha: math.Exp(l[1]), A: math.Exp(l[2]), B: math.Exp(l[3])}
}
