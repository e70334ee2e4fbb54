package api

import (
	"testing"

	"github.com/retainhq/retain/platform/auth"
	campaignv1 "github.com/retainhq/retain/proto/gen/go/retain/campaign/v1"
)

// TestEveryMethodHasAScope: a method missing from the table would be
// refused by the server's auth interceptor (or worse, left open).
func TestEveryMethodHasAScope(t *testing.T) {
	if err := auth.ValidateMethodScopes(MethodScopes); err != nil {
		t.Fatal(err)
	}
	sd := campaignv1.CampaignService_ServiceDesc
	for _, m := range sd.Methods {
		if _, ok := MethodScopes["/"+sd.ServiceName+"/"+m.MethodName]; !ok {
			t.Errorf("method %s has no scope", m.MethodName)
		}
	}
}
