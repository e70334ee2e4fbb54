package testenv_test

import (
	"testing"

	"github.com/retainhq/retain/platform/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }
