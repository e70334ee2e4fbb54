package app_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/retainhq/retain/platform/testenv"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
	"github.com/retainhq/retain/services/notifier/internal/app"
	"github.com/retainhq/retain/services/notifier/internal/store"
)

// TestStartWarnsOfStoredTemplatesThatNoLongerCompile: a template an older
// release stored may break a newer release's limits (decision 0027 refuses
// range); every send with it would fail, so start-up names it, with its
// shop and the problem, and counts what it checked.
func TestStartWarnsOfStoredTemplatesThatNoLongerCompile(t *testing.T) {
	pool := testenv.MigratedPool(t, store.Migrations)
	ctx := context.Background()
	now := time.Now()
	// As an older release stored them: written without today's checks.
	for tenant, body := range map[string]string{"shop-a": "{{range .items}}x{{end}}", "shop-b": "Hello {{.name}}"} {
		tpl := &notifierv1.Template{Key: "legacy", Channel: notifierv1.Channel_CHANNEL_SMS,
			Variables: []*notifierv1.VariableSpec{{Name: "items", Type: "text"}, {Name: "name", Type: "text"}},
			Variants:  []*notifierv1.TemplateVariant{{Body: body}}}
		if _, err := store.InsertTemplate(ctx, pool, tenant, tpl, true, now); err != nil {
			t.Fatal(err)
		}
	}
	var logs testenv.SyncBuffer
	e, err := app.New(pool, app.Config{Lease: 30 * time.Second, SendTimeout: 5 * time.Second, MaxAttempts: 3,
		RetryInitial: time.Second, RetryMax: time.Minute, SendBatch: 50, SendWorkers: 1, PollInterval: time.Second},
		nil, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	logs.WaitFor(t, "stored templates checked")
	out := logs.String()
	if n := strings.Count(out, "stored template does not compile"); n != 1 ||
		!strings.Contains(out, "tenant=shop-a template=legacy channel=sms version=1 field=template.variants[0].body") {
		t.Errorf("want one warning, naming shop-a's legacy sms template and its body:\n%s", out)
	}
	if !strings.Contains(out, "templates=2 not_compiling=1") {
		t.Errorf("the summary does not count 2 checked, 1 broken:\n%s", out)
	}
}
