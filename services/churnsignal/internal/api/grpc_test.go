package api

import (
	"math"
	"testing"

	churnv1 "github.com/retainhq/retain/proto/gen/go/retain/churn/v1"
	"github.com/retainhq/retain/services/churnsignal/internal/store"
)

func TestPageToken(t *testing.T) {
	for _, c := range []store.Cursor{{Exact: 72.123456789, CustomerID: "c-1"}, {Exact: 0, CustomerID: "a|b|c"}, {Exact: math.SmallestNonzeroFloat64, CustomerID: "مشتری"}} {
		tok := encodeToken(c, churnv1.RiskBand_RISK_BAND_HIGH)
		got, band, err := decodeToken(tok)
		if err != nil || got != c || band != churnv1.RiskBand_RISK_BAND_HIGH {
			t.Fatalf("round trip of %+v: %+v %v %v", c, got, band, err)
		}
	}
	for _, bad := range []string{"", "!!", "djE", "djJ8M3wwfGM"} {
		if _, _, err := decodeToken(bad); err == nil {
			t.Errorf("decodeToken(%q) accepted", bad)
		}
	}
}
