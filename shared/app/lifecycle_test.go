package app

import (
	"context"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"
)

// A failed telemetry setup is not remembered: the next build tries again,
// and once one succeeded the process keeps it.
func TestTelemetrySetupRetriedAfterFailure(t *testing.T) {
	calls := 0
	setup := func() (func(context.Context) error, error) {
		calls++
		if calls == 1 {
			return nil, errors.New("credentials not ready")
		}
		return func(context.Context) error { return nil }, nil
	}
	if _, err := installTelemetryWith(setup); err == nil {
		t.Fatal("the first, failing setup reported success")
	}
	if f, err := installTelemetryWith(setup); err != nil || f == nil {
		t.Fatalf("the retry: %v", err)
	}
	if _, err := installTelemetryWith(setup); err != nil || calls != 2 {
		t.Fatalf("after a success: %d setups, %v", calls, err)
	}
}

// On SIGTERM the cleanup (flush telemetry, close clients) runs with a
// deadline, and only then does the process go on to end.
func TestSignalFlushesBeforeTheEnd(t *testing.T) {
	sig := make(chan os.Signal, 1)
	var order []string
	done := make(chan struct{})
	go func() {
		OnSignal(sig, func(ctx context.Context) {
			if _, ok := ctx.Deadline(); !ok {
				t.Error("cleanup without a deadline")
			}
			order = append(order, "flush")
		}, func(s os.Signal) { order = append(order, "exit "+s.String()) })
		close(done)
	}()
	sig <- syscall.SIGTERM
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("no reaction to SIGTERM")
	}
	if len(order) != 2 || order[0] != "flush" || order[1] != "exit terminated" {
		t.Fatalf("order %v", order)
	}
}
