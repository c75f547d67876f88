package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func recorder(env map[string]string) (Lookup, *[]string) {
	var read []string
	return func(name string) (string, bool) {
		read = append(read, name)
		v, ok := env[name]
		return v, ok
	}, &read
}

func sameSet(t *testing.T, what string, got, want []string) {
	t.Helper()
	g, w := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	g, w = slices.Compact(g), slices.Compact(w)
	if !slices.Equal(g, w) {
		t.Fatalf("%s reads %v, its list says %v", what, g, w)
	}
}

// The lists terraform is checked against are exactly what the loaders read.
func TestLoadersReadExactlyTheirLists(t *testing.T) {
	lookup, read := recorder(nil)
	_, _ = LoadFrom(lookup)
	sameSet(t, "Load", *read, FunctionVars)
	lookup, read = recorder(nil)
	_, _ = LoadRelay(lookup)
	sameSet(t, "LoadRelay", *read, RelayVars)
}

func TestLoad(t *testing.T) {
	good := map[string]string{
		EnvProject: "p", EnvAuthSecret: strings.Repeat("s", 16), EnvInternalSecret: strings.Repeat("i", 16),
		EnvCheckLadder: "10s, 30s,60", EnvTimeoutDefault: "900", EnvInternalCallers: "a@x, b@y",
	}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range good {
			m[a] = b
		}
		m[k] = v
		return m
	}
	tests := []struct {
		name string
		env  map[string]string
		need []string
		err  string
	}{
		{"good", good, []string{EnvProject, EnvAuthSecret, EnvInternalSecret}, ""},
		{"missing project", with(EnvProject, ""), []string{EnvProject}, EnvProject + " is required"},
		{"short secret", with(EnvAuthSecret, "x"), []string{EnvAuthSecret}, EnvAuthSecret},
		{"bad mode", with(EnvAuthMode, "basic"), nil, EnvAuthMode},
		{"bad duration", with(EnvCallTimeout, "soon"), nil, EnvCallTimeout},
		{"bad ladder", with(EnvCheckLadder, "10s,-1s"), nil, EnvCheckLadder},
		{"default beyond max", with(EnvTimeoutMax, "60"), nil, "payment timeouts"},
		{"bad broker mode", with(EnvBrokerMode, "magic"), nil, EnvBrokerMode},
		{"bad log level", with(EnvLogLevel, "loud"), nil, EnvLogLevel},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lookup, _ := recorder(tc.env)
			c, err := LoadFrom(lookup, tc.need...)
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c.TimeoutDefault != 900*time.Second || len(c.CheckLadder) != 3 || c.CheckLadder[2] != time.Minute || len(c.InternalCallers) != 2 {
					t.Fatalf("config %+v", c)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want mention of %q", err, tc.err)
			}
		})
	}
}

func TestLoadRelay(t *testing.T) {
	lookup, _ := recorder(map[string]string{EnvAMQPURL: "amqp://x", EnvRelayTarget: "http://t", EnvInternalSecret: strings.Repeat("i", 16), EnvRelayBackoffBase: "250ms"})
	r, err := LoadRelay(lookup)
	if err != nil || r.BackoffBase != 250*time.Millisecond || r.Concurrency != 64 || r.Immediate != 1 || r.Port != "8080" {
		t.Fatalf("%+v %v", r, err)
	}
	lookup, _ = recorder(map[string]string{EnvRelayConcurrency: "-2"})
	if _, err := LoadRelay(lookup); err == nil || !strings.Contains(err.Error(), EnvAMQPURL) || !strings.Contains(err.Error(), EnvRelayConcurrency) {
		t.Fatalf("err = %v", err)
	}
	// A list of brokers is read; a malformed entry is refused without its password.
	lookup, _ = recorder(map[string]string{EnvAMQPURL: "amqp://u:secret@a:5672/,amqps://u:secret@b/", EnvRelayTarget: "http://t", EnvInternalSecret: strings.Repeat("i", 16)})
	if _, err := LoadRelay(lookup); err != nil {
		t.Fatalf("a list of brokers: %v", err)
	}
	lookup, _ = recorder(map[string]string{EnvAMQPURL: "amqp://u:secret@a/,http://u:secret@b/", EnvRelayTarget: "http://t", EnvInternalSecret: strings.Repeat("i", 16)})
	if _, err := LoadRelay(lookup); err == nil || !strings.Contains(err.Error(), "broker URL 2 of 2") || strings.Contains(err.Error(), "secret") {
		t.Fatalf("a malformed broker in the list: %v", err)
	}
}

// The functions and the relay accept the same broker modes.
func TestBrokerModesAgree(t *testing.T) {
	for mode, ok := range map[string]bool{"ladder": true, "native": true, "plugin": true, "x": false} {
		t.Setenv(EnvBrokerMode, mode)
		_, errFn := Load()
		lookup, _ := recorder(map[string]string{EnvAMQPURL: "amqp://x", EnvRelayTarget: "http://t", EnvInternalSecret: strings.Repeat("i", 16), EnvBrokerMode: mode})
		_, errRelay := LoadRelay(lookup)
		if (errFn == nil) != ok || (errRelay == nil) != ok {
			t.Errorf("BROKER_MODE=%q: functions %v, relay %v; want accepted %v", mode, errFn, errRelay, ok)
		}
	}
}
