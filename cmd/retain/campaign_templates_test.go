package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCampaignTemplatesCheckedThroughDevStack: saving a campaign looks up
// each template it sends in the notifier of the same dev stack, as the
// caller. A template the notifier lacks is refused naming the step, with
// nothing saved; one it has (a default, or one applied with `retain
// templates apply`) is accepted; a token without read cannot look them up
// and is told so. Applying the same file twice stores one version.
func TestCampaignTemplatesCheckedThroughDevStack(t *testing.T) {
	ctx, dir, state, _ := startDevStack(t)
	cli := func(t *testing.T, token string, args ...string) (string, error) {
		t.Helper()
		env, out, errOut := testEnv(nil)
		err := run(ctx, env, append(args, "--addr", state.GRPCAddr, "--token", token))
		return out.String() + errOut.String(), err
	}
	write := func(t *testing.T, name, body string) string {
		t.Helper()
		path := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	campaign := func(tmpl string) string {
		return `
id: thanks-vip
name: Thank the big spenders
trigger: {event: order.placed}
conditions:
  - order_total_at_least: {amount_minor: 50000, currency: EUR}
steps:
  - {id: wait, wait: {duration: 1h}}
  - {id: thanks, send: {channel: CHANNEL_EMAIL, template_key: ` + tmpl + `}}
  - {id: ping, send: {channel: CHANNEL_WEBHOOK, template_key: detractor_support_alert, category: CATEGORY_TRANSACTIONAL}}
`
	}

	missing := write(t, "missing.yaml", campaign("big_spender_thanks"))
	got, err := cli(t, state.Token, "campaigns", "apply", "-f", missing)
	if err == nil || !strings.Contains(err.Error(), `campaign.steps[1].send.template_key: the notifier has no email template "big_spender_thanks"`) {
		t.Fatalf("a campaign sending a template the notifier lacks: %v\n%s", err, got)
	}
	if got, err := cli(t, state.Token, "campaigns", "show", "thanks-vip"); err == nil {
		t.Fatalf("the refused campaign was saved:\n%s", got)
	}

	// A token that may write campaigns but not read cannot look the
	// templates up, and is told what it lacks.
	priv, err := os.ReadFile(filepath.Join(dir, devPrivateKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	keyEnv, out, _ := testEnv(map[string]string{"RETAIN_AUTH_PRIVATE_KEY": strings.TrimSpace(string(priv))})
	if err := run(ctx, keyEnv, []string{"tokens", "issue", "--tenant", devTenant, "--scopes", "campaigns:write"}); err != nil {
		t.Fatal(err)
	}
	writeOnly := strings.TrimSpace(out.String())
	if got, err := cli(t, writeOnly, "campaigns", "apply", "-f", missing); err == nil || !strings.Contains(err.Error(), "needs the read scope as well") {
		t.Fatalf("a campaigns:write token without read: %v\n%s", err, got)
	}

	// Once the template exists, the same campaign is accepted.
	tmpl := write(t, "template.yaml", `
key: big_spender_thanks
channel: email
variants:
  - locale: ""
    subject: Thank you, {{.customer.first_name}}
    text: Your order made our day.
`)
	if got, err := cli(t, state.Token, "templates", "apply", "-f", tmpl); err != nil {
		t.Fatalf("templates apply: %v\n%s", err, got)
	}
	found := write(t, "found.yaml", campaign("big_spender_thanks"))
	if got, err := cli(t, state.Token, "campaigns", "apply", "-f", found); err != nil || !strings.Contains(got, "campaign thanks-vip created: version 1") {
		t.Fatalf("with the template in the notifier: %v\n%s", err, got)
	}
	if got, err := cli(t, state.Token, "campaigns", "apply", "-f", found); err != nil || !strings.Contains(got, "campaign thanks-vip unchanged: version 1") {
		t.Fatalf("the same file again: %v\n%s", err, got)
	}
}
