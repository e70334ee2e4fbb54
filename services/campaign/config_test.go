package campaign_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/retainhq/retain/platform/auth/authtest"
	"github.com/retainhq/retain/platform/config"
	"github.com/retainhq/retain/platform/service"
	"github.com/retainhq/retain/platform/testenv"
	"github.com/retainhq/retain/services/campaign"
)

// TestConfigWorkers reads RETAIN_CAMPAIGN_WORKERS and -workers, keeps the
// default of four when unset, and rejects a count outside 1-64 naming the
// variable and the flag.
func TestConfigWorkers(t *testing.T) {
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
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "RETAIN_CAMPAIGN_WORKERS (-workers): must be 1-64, got "+bad) {
			t.Errorf("%s workers: %v", bad, err)
		}
	}
}

// TestConfigFactsExclusive: the facts consumer is exclusive unless
// RETAIN_CAMPAIGN_FACTS_EXCLUSIVE or -facts-exclusive says otherwise; a
// value that is not a boolean is refused naming the variable.
func TestConfigFactsExclusive(t *testing.T) {
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

// TestConfigNotifierAddr: RETAIN_CAMPAIGN_NOTIFIER_ADDR is empty (no
// template check) unless set, and an address without a port is refused
// naming the variable.
func TestConfigNotifierAddr(t *testing.T) {
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

// TestConfigMessages: a bad campaign setting is reported as a bad shared
// one is (the first case), by the check the binary's main runs
// (service.Parse) and by New: variable and flag, the form wanted, the
// value.
func TestConfigMessages(t *testing.T) {
	pub := authtest.Keys(t).Public
	valid := []string{"RETAIN_AUTH_PUBLIC_KEY=" + pub, "RETAIN_CAMPAIGN_DATABASE_URL=postgres://retain@db/campaign"}
	missing := filepath.Join(t.TempDir(), "ca.crt")
	notCA := filepath.Join(t.TempDir(), "tls.key")
	if err := os.WriteFile(notCA, []byte("-----BEGIN PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	testenv.ConfigMessages(t, valid,
		func(environ []string) (campaign.Config, error) {
			cfg := campaign.DefaultConfig()
			_, err := service.Parse("campaign", &cfg, nil, environ)
			return cfg, err
		},
		func(cfg campaign.Config) error {
			_, err := campaign.New(context.Background(), cfg, nil)
			return err
		},
		[]testenv.ConfigCase{
			{Env: []string{"RETAIN_GRPC_ADDR=nope"}, Want: `RETAIN_GRPC_ADDR (-grpc-addr): want host:port such as :9090, got "nope"`},
			{Env: []string{"RETAIN_CAMPAIGN_BATCH_SIZE=0"}, Want: "RETAIN_CAMPAIGN_BATCH_SIZE (-batch-size): must be 1-10000, got 0"},
			{Env: []string{"RETAIN_CAMPAIGN_WORKERS=65"}, Want: "RETAIN_CAMPAIGN_WORKERS (-workers): must be 1-64, got 65"},
			{Env: []string{"RETAIN_CAMPAIGN_TIMER_INTERVAL=-1s"}, Want: "RETAIN_CAMPAIGN_TIMER_INTERVAL (-timer-interval): must not be negative (0 disables the scheduler), got -1s"},
			{Env: []string{"RETAIN_CAMPAIGN_TIMER_BATCH=10001"}, Want: "RETAIN_CAMPAIGN_TIMER_BATCH (-timer-batch): must be 1-10000, got 10001"},
			{Env: []string{"RETAIN_CAMPAIGN_AUDIENCE_INTERVAL=-1m"}, Want: "RETAIN_CAMPAIGN_AUDIENCE_INTERVAL (-audience-interval): must not be negative (0: never), got -1m0s"},
			{Env: []string{"RETAIN_CAMPAIGN_AUDIENCE_MAX_BACKLOG=0"}, Want: "RETAIN_CAMPAIGN_AUDIENCE_MAX_BACKLOG (-audience-max-backlog): must be at least 1 (events of a shop the facts consumer may have yet to apply), got 0"},
			{Env: []string{"RETAIN_CAMPAIGN_MAX_TRIGGER_AGE=-1h"}, Want: "RETAIN_CAMPAIGN_MAX_TRIGGER_AGE (-max-trigger-age): must not be negative (0: no limit), got -1h0m0s"},
			{Env: []string{"RETAIN_CAMPAIGN_NOTIFIER_ADDR=notifier:0"}, Want: `RETAIN_CAMPAIGN_NOTIFIER_ADDR (-notifier-addr): want a port of 1-65535 in host:port, got "notifier:0"`},
			{Env: []string{"RETAIN_CAMPAIGN_NOTIFIER_TLS=true"}, Want: "RETAIN_CAMPAIGN_NOTIFIER_TLS (-notifier-tls): set without RETAIN_CAMPAIGN_NOTIFIER_ADDR (-notifier-addr): there is no notifier to reach"},
			{Env: []string{"RETAIN_CAMPAIGN_NOTIFIER_ADDR=notifier:9090", "RETAIN_CAMPAIGN_NOTIFIER_TLS_CA=" + missing},
				Want: fmt.Sprintf("RETAIN_CAMPAIGN_NOTIFIER_TLS_CA (-notifier-tls-ca): cannot read %q: no such file or directory", missing)},
			{Env: []string{"RETAIN_CAMPAIGN_NOTIFIER_ADDR=notifier:9090", "RETAIN_CAMPAIGN_NOTIFIER_TLS_CA=" + notCA},
				Want: fmt.Sprintf("RETAIN_CAMPAIGN_NOTIFIER_TLS_CA (-notifier-tls-ca): %q holds no PEM certificate: want the CA certificate(s) that signed the server's", notCA)},
			{Env: []string{"RETAIN_TLS_KEY_FILE=/etc/retain/tls/tls.key"}, Want: "RETAIN_TLS_KEY_FILE (-tls-key-file): needs RETAIN_TLS_CERT_FILE (-tls-cert-file), the certificate of the key"},
		}...)
}
