package bus_test

import (
	"testing"

	"github.com/retainhq/retain/platform/testenv"
)

// TestKeysCollateC: every indexed text column of the bus tables compares
// bytewise, whatever the server's locale (decision 0019).
func TestKeysCollateC(t *testing.T) {
	testenv.RequireKeysCollateC(t)
}
