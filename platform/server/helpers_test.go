package server

import (
	"context"
	"sync"
	"testing"

	"github.com/retainhq/retain/platform/telemetry"
	"github.com/retainhq/retain/platform/testenv"
)

func newTelemetry(t *testing.T) (*telemetry.Telemetry, *testenv.SyncBuffer) {
	t.Helper()
	logs := &testenv.SyncBuffer{}
	tel, err := telemetry.Setup(context.Background(), telemetry.Config{Service: "test", LogLevel: "debug", Output: logs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return tel, logs
}

// runInBackground runs c until the test ends and checks it stopped cleanly.
func runInBackground(t *testing.T, c interface{ Run(context.Context) error }) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return stop
}
