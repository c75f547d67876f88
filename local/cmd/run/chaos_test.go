//go:build outage

package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ordertimeout/ordertimeout/local/testenv"
)

// The chaos run in its short form, against the real `make run`: 300
// orders while the relay and a function are killed, RabbitMQ's app is
// stopped for ~10 s and the relay frozen for ~20 s; make run starts what
// was killed again, and at the end every order is decided exactly once
// with stock and money conserved. It stops RabbitMQ's app, so it runs with
// the outage tests (-tags outage), alone.
func TestOutageChaosRun(t *testing.T) {
	st := startRun(t)
	defer testenv.RabbitCtl(t, "start_app") // whatever happened
	out := t.TempDir()
	cmd := exec.Command("go", "run", "./local/cmd/load", "-env", filepath.Join(st.root, ".run", "env"), "-out", out,
		"-orders", "300", "-rate", "20", "-pay", "0.4", "-cancel", "0.3", "-timeout", "5s", "-chaos", "-faults", "4")
	cmd.Dir = st.root
	res, err := cmd.CombinedOutput()
	text := string(res)
	if err != nil || !strings.Contains(text, "invariants hold") || !strings.Contains(text, "faults injected     4") {
		t.Fatalf("chaos run: %v\n%s", err, text[max(0, len(text)-4000):])
	}
	if strings.Contains(text, "(failed:") {
		t.Fatalf("a fault could not be injected:\n%s", text[max(0, len(text)-4000):])
	}
	if !strings.Contains(st.out.String(), "relay exited (signal: killed)") {
		t.Fatalf("make run did not restart the killed relay:\n%s", st.out.String())
	}
	i := strings.Index(text, "create throughput")
	t.Logf("%s", text[max(0, i):])
}
