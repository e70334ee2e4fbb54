package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCampaignCommandsThroughDevStack drives `retain playbooks` and
// `retain campaigns` against a running dev stack: install, list, show the
// file form, edit and apply it as a new version, reject a bad file naming
// the field, preview, pause, resume and report.
func TestCampaignCommandsThroughDevStack(t *testing.T) {
	ctx, _, state, _ := startDevStack(t)
	cli := func(t *testing.T, args ...string) (string, error) {
		t.Helper()
		env, out, errOut := testEnv(nil)
		err := run(ctx, env, append(args, "--addr", state.GRPCAddr, "--token", state.Token))
		return out.String() + errOut.String(), err
	}
	must := func(t *testing.T, want string, args ...string) string {
		t.Helper()
		got, err := cli(t, args...)
		if err != nil || !strings.Contains(got, want) {
			t.Fatalf("retain %s: %v\nwant %q in:\n%s", strings.Join(args, " "), err, want, got)
		}
		return got
	}

	must(t, "detractor-recovery", "playbooks", "list")
	must(t, "installed playbook win-back as campaign win-back (active)", "playbooks", "install", "win-back")
	if _, err := cli(t, "playbooks", "install", "win-back"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second install: %v", err)
	}
	must(t, "win-back", "campaigns", "list")
	file := must(t, "template_key: winback_90", "campaigns", "show", "win-back")

	path := filepath.Join(t.TempDir(), "win-back.yaml")
	edited := strings.Replace(file, "holdout_percent: 10", "holdout_percent: 20", 1)
	if err := os.WriteFile(path, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	must(t, "campaign win-back updated: version 2, active", "campaigns", "apply", "-f", path)
	must(t, "holdout_percent: 20", "campaigns", "show", "win-back")
	must(t, "holdout_percent: 10", "campaigns", "show", "win-back", "--version", "1")

	bad := strings.Replace(edited, "holdout_percent: 20", "holdout_percent: 95", 1)
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := cli(t, "campaigns", "apply", "-f", path); err == nil || !strings.Contains(err.Error(), "campaign.holdout_percent: 95 is outside 0-90") {
		t.Fatalf("bad apply: %v\n%s", err, got)
	}
	newFile := filepath.Join(t.TempDir(), "new.yaml")
	if err := os.WriteFile(newFile, []byte(strings.Replace(edited, "id: win-back", "id: win-back-copy", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	must(t, "campaign win-back-copy created: version 1", "campaigns", "apply", "-f", newFile)
	must(t, "0 customers would enter now", "campaigns", "preview", "win-back")
	must(t, "win-back is paused", "campaigns", "pause", "win-back")
	must(t, "win-back is active", "campaigns", "resume", "win-back")
	must(t, "nobody has entered yet", "campaigns", "report", "win-back")
	must(t, `"nobody has entered yet"`, "campaigns", "report", "win-back", "--output", "json")
	must(t, "win-back-copy is archived", "campaigns", "archive", "win-back-copy")

	// Not found is said once; a bad token still gets the scope hint.
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"campaigns", "report", "nope"}, `campaign "nope": not found`},
		{[]string{"campaigns", "show", "nope"}, `campaign "nope": not found`},
		{[]string{"deliveries", "show", "nope"}, `no delivery "nope"`},
		{[]string{"churn", "risk", "nobody"}, `not found: nothing is known about customer "nobody"`},
	} {
		if _, err := cli(t, tt.args...); err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("retain %s: %v, want %q", strings.Join(tt.args, " "), err, tt.want)
		}
	}
	env, _, _ := testEnv(nil)
	if err := run(ctx, env, []string{"campaigns", "list", "--addr", state.GRPCAddr, "--token", "bad"}); err == nil ||
		!strings.HasPrefix(err.Error(), "unauthenticated: ") || !strings.Contains(err.Error(), "(check --token / RETAIN_TOKEN and its scopes: read (campaigns:write to change campaigns))") {
		t.Errorf("a bad token: %v", err)
	}
}
