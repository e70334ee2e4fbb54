package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDevStateFoundFromSubdirectory: a command run below the directory of
// `retain dev` finds its state file, as git finds .git; the nearest one
// wins.
func TestDevStateFoundFromSubdirectory(t *testing.T) {
	root := t.TempDir()
	for dir, addr := range map[string]string{root: "127.0.0.1:9090", filepath.Join(root, "a"): "127.0.0.1:9191"} {
		if err := os.MkdirAll(filepath.Join(dir, stateDir), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := writeDevState(filepath.Join(dir, stateDir), devState{GRPCAddr: addr, Token: "tok-" + addr}); err != nil {
			t.Fatal(err)
		}
	}
	for sub, want := range map[string]string{"": "127.0.0.1:9090", "b/c": "127.0.0.1:9090", "a": "127.0.0.1:9191", "a/d/e": "127.0.0.1:9191"} {
		dir := filepath.Join(root, sub)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Chdir(dir)
		e := &endpoint{}
		if err := e.resolve(); err != nil || e.addr != want || e.token != "tok-"+want {
			t.Errorf("from %s: %+v %v, want %s", sub, e, err, want)
		}
	}
}

// TestOutputTableIsText: --output table (what `retain metrics` called its
// text) is the text form of every command, metrics included.
func TestOutputTableIsText(t *testing.T) {
	env, _, _ := testEnv(nil)
	f := newCommandFlags(env, "campaigns list", "campaigns list")
	if _, err := f.parse([]string{"--output", "table"}); err != nil || *f.output != "text" {
		t.Errorf("--output table: %q, %v", *f.output, err)
	}
	o := &metricsOptions{output: "table", limit: 10}
	if err := o.check(); err != nil && strings.Contains(err.Error(), "--output") || o.output != "text" {
		t.Errorf("metrics --output table: %q, %v", o.output, err)
	}
}
