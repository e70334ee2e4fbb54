package charttest

import (
	"flag"
	"strings"
	"testing"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/config"
)

// TestStreamSettingsOneValue: every setting that sizes the shared streams
// (those bus.StreamOptions binds; decision 0021) is rendered into every
// service's ConfigMap with one value, from config, and refused in a
// service's env. The chart takes both from one list (retain.streamSettings
// in _helpers.tpl), so a stream setting the bus gains but the list lacks
// fails here.
func TestStreamSettingsOneValue(t *testing.T) {
	fs := flag.NewFlagSet("streams", flag.ContinueOnError)
	new(bus.StreamOptions).RegisterFlags(fs)
	streamEnv := config.EnvNames(fs)
	if len(streamEnv) == 0 {
		t.Fatal("bus.StreamOptions binds no variable")
	}

	r := mustRender(t, []string{"values-production.yaml"}, "config.eventsMaxAge=1440h")
	for _, env := range streamEnv {
		values := map[string][]string{}
		for _, name := range allServices {
			v, ok := configMap(t, r, "retain-"+name).Data[env]
			if !ok {
				t.Errorf("retain-%s: %s is not in the ConfigMap", name, env)
				continue
			}
			values[v] = append(values[v], name)
		}
		if len(values) > 1 {
			t.Errorf("%s differs between services: %v", env, values)
		}
	}
	if got := configMap(t, r, "retain-ingest").Data[bus.EnvMaxAge]; got != "1440h" {
		t.Errorf("%s = %q, want config.eventsMaxAge's 1440h", bus.EnvMaxAge, got)
	}
	if got := configMap(t, r, "retain-ingest").Data[bus.EnvReplicas]; got != "3" {
		t.Errorf("%s = %q, want values-production.yaml's 3", bus.EnvReplicas, got)
	}

	for _, env := range streamEnv {
		_, err := render(t, nil, "services.metrics.env."+env+"=x")
		if err == nil || !strings.Contains(err.Error(), "services.metrics.env sets "+env) || !strings.Contains(err.Error(), "set config.") {
			t.Errorf("%s in one service's env: %v; want it refused, naming the config key to set", env, err)
		}
	}
}
