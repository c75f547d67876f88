//go:build crashaftercommit

package store

import (
	"os"
	"syscall"

	"github.com/ordertimeout/ordertimeout/shared/domain"
)

// In the crash test's build, CRASH_AFTER_COMMIT=<event type> makes the
// process SIGKILL itself right after committing a change that recorded an
// event of that type: the commit is made, its event not yet published.
func init() {
	if typ := os.Getenv("CRASH_AFTER_COMMIT"); typ != "" {
		crashAfterCommit = func(ev domain.Event) {
			if string(ev.Type) == typ {
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
		}
	}
}
