package notifier_test

import (
	"testing"

	"github.com/retainhq/retain/platform/testenv"
	"github.com/retainhq/retain/services/notifier/internal/store"
)

// TestKeysCollateC: every indexed text column of the service's tables
// compares bytewise, whatever the server's locale (decision 0019).
func TestKeysCollateC(t *testing.T) {
	testenv.RequireKeysCollateC(t, store.Migrations)
}
