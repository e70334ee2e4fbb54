package campaign_test

import (
	"flag"
	"strings"
	"testing"

	"github.com/retainhq/retain/platform/config"
	"github.com/retainhq/retain/platform/testenv"
	"github.com/retainhq/retain/services/campaign"
)

// TestWorkersSetting reads RETAIN_CAMPAIGN_WORKERS and -workers, keeps the
// default of four when unset, and rejects a count outside 1-64 naming the
// variable.
func TestWorkersSetting(t *testing.T) {
	parse := func(t *testing.T, env map[string]string, args ...string) campaign.Config {
		t.Helper()
		cfg := campaign.DefaultConfig()
		testenv.ParseSettings(t, cfg.RegisterFlags, env, args...)
		return cfg
	}
	if got := parse(t, nil).Workers; got != 4 {
		t.Errorf("default %d workers, want 4", got)
	}
	if got := parse(t, map[string]string{"RETAIN_CAMPAIGN_WORKERS": "8"}, "-workers", "2").Workers; got != 2 {
		t.Errorf("flag over env: %d workers", got)
	}
	for _, bad := range []string{"0", "65"} {
		cfg := parse(t, map[string]string{"RETAIN_CAMPAIGN_WORKERS": bad})
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "RETAIN_CAMPAIGN_WORKERS "+bad+": must be 1-64") {
			t.Errorf("%s workers: %v", bad, err)
		}
	}
}

// TestFactsExclusiveSetting: the facts consumer is exclusive unless
// RETAIN_CAMPAIGN_FACTS_EXCLUSIVE or -facts-exclusive says otherwise; a
// value that is not a boolean is refused naming the variable.
func TestFactsExclusiveSetting(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		args []string
		want bool
	}{
		{nil, nil, true},
		{map[string]string{"RETAIN_CAMPAIGN_FACTS_EXCLUSIVE": "false"}, nil, false},
		{map[string]string{"RETAIN_CAMPAIGN_FACTS_EXCLUSIVE": "false"}, []string{"-facts-exclusive=true"}, true},
	} {
		cfg := campaign.DefaultConfig()
		testenv.ParseSettings(t, cfg.RegisterFlags, tc.env, tc.args...)
		if cfg.FactsExclusive != tc.want {
			t.Errorf("env %v, args %v: exclusive %v, want %v", tc.env, tc.args, cfg.FactsExclusive, tc.want)
		}
	}
	cfg := campaign.DefaultConfig()
	fs := flag.NewFlagSet("campaign", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	err := config.Parse(fs, nil, func(k string) (string, bool) { return "maybe", k == "RETAIN_CAMPAIGN_FACTS_EXCLUSIVE" })
	if err == nil || !strings.Contains(err.Error(), "RETAIN_CAMPAIGN_FACTS_EXCLUSIVE") {
		t.Errorf("RETAIN_CAMPAIGN_FACTS_EXCLUSIVE=maybe: %v", err)
	}
}

// TestNotifierAddrSetting: RETAIN_CAMPAIGN_NOTIFIER_ADDR is empty (no
// template check) unless set, and an address without a port is refused
// naming the variable.
func TestNotifierAddrSetting(t *testing.T) {
	cfg := campaign.DefaultConfig()
	testenv.ParseSettings(t, cfg.RegisterFlags, nil)
	if cfg.NotifierAddr != "" {
		t.Errorf("default notifier address %q, want none", cfg.NotifierAddr)
	}
	for addr, ok := range map[string]bool{"notifier:9090": true, "10.0.0.7:9090": true, "notifier": false, "notifier:": false} {
		cfg := campaign.DefaultConfig()
		testenv.ParseSettings(t, cfg.RegisterFlags, map[string]string{"RETAIN_CAMPAIGN_NOTIFIER_ADDR": addr})
		err := cfg.Validate()
		if ok && err != nil && strings.Contains(err.Error(), "RETAIN_CAMPAIGN_NOTIFIER_ADDR") {
			t.Errorf("%q: %v", addr, err)
		}
		if !ok && (err == nil || !strings.Contains(err.Error(), "RETAIN_CAMPAIGN_NOTIFIER_ADDR")) {
			t.Errorf("%q: %v, want it refused naming the variable", addr, err)
		}
	}
}
