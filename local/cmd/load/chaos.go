package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ordertimeout/ordertimeout/local/proc"
)

// fault is one injected failure: when it started (since the first create),
// how long it lasted, what it was.
type fault struct {
	at, dur time.Duration
	what    string
}

// chaos injects failures into the processes `make run` started (found by
// their binaries under .run/bin) and into the machine's RabbitMQ, one at a
// time, at random moments: kill -9 of the relay, kill -9 of a function,
// RabbitMQ's app stopped for ~10 s, the relay frozen (SIGSTOP) for ~20 s.
// make run starts what was killed again; nothing may be lost.
type chaos struct {
	bin   string // .run/bin, absolute
	begin time.Time
	// nodes are the cluster's name=pidfile when `make run` runs one
	// (RABBITMQ_CLUSTER); then a node is killed too, and stop_app stops
	// another node's app.
	nodes []string

	mu     sync.Mutex
	faults []fault
}

// kinds are the faults, in the order they are shuffled from.
var kinds = []string{"kill -9 relay", "kill -9 function", "RabbitMQ stop_app 10s", "relay SIGSTOP 20s"}

// nodeKill is the cluster-mode fault.
const nodeKill = "kill -9 a broker node"

// run injects n faults (each kind once before any repeats) spread over
// window, and returns when the last is over.
func (c *chaos) run(n int, window time.Duration) {
	kinds := kinds
	if len(c.nodes) > 1 {
		kinds = append(kinds[:len(kinds):len(kinds)], nodeKill)
	}
	order := rand.Perm(len(kinds))
	slot := window / time.Duration(n+1)
	for i := range n {
		time.Sleep(slot/2 + rand.N(slot/2+1))
		what := kinds[order[i%len(kinds)]]
		at := time.Since(c.begin)
		dur, which, err := c.inject(what)
		if which != "" {
			what += " (" + which + ")"
		}
		if err != nil {
			what += " (failed: " + err.Error() + ")"
		}
		c.mu.Lock()
		c.faults = append(c.faults, fault{at: at, dur: dur, what: what})
		c.mu.Unlock()
		fmt.Printf("\n   %5.1fs  fault: %s\n", at.Seconds(), what)
	}
}

// inject runs one fault and returns how long it lasted and, for a function
// kill, which function.
func (c *chaos) inject(what string) (time.Duration, string, error) {
	start := time.Now()
	switch what {
	case "kill -9 relay":
		return 0, "", c.signal("relay", "", syscall.SIGKILL)
	case "kill -9 function":
		fns := []string{"CreateOrder", "DeductStock", "ClearCart", "Pay", "HandleTimeout", "Sweep"}
		fn := fns[rand.IntN(len(fns))]
		return 0, fn, c.signal("function", fn, syscall.SIGKILL)
	case "RabbitMQ stop_app 10s":
		ctl := []string{"-q"}
		if len(c.nodes) > 1 {
			name, _, _ := strings.Cut(c.nodes[1], "=") // never the node nodeKill kills
			ctl = append(ctl, "-n", name)
		}
		if out, err := proc.Rabbitmqctl(append(ctl, "stop_app")...).CombinedOutput(); err != nil {
			return 0, "", fmt.Errorf("%v %s", err, out)
		}
		time.Sleep(10 * time.Second)
		if out, err := proc.Rabbitmqctl(append(ctl, "start_app")...).CombinedOutput(); err != nil {
			return time.Since(start), "", fmt.Errorf("start_app: %v %s", err, out)
		}
		return time.Since(start), "", nil
	case nodeKill:
		// The last node, once: killing a second would leave the cluster
		// without a quorum for good.
		_, pidFile, _ := strings.Cut(c.nodes[len(c.nodes)-1], "=")
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return 0, "", err
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			return 0, "", err
		}
		if syscall.Kill(pid, 0) != nil {
			return 0, "", errors.New("that node is dead already")
		}
		return 0, "", syscall.Kill(pid, syscall.SIGKILL)
	case "relay SIGSTOP 20s":
		if err := c.signal("relay", "", syscall.SIGSTOP); err != nil {
			return 0, "", err
		}
		time.Sleep(20 * time.Second)
		return time.Since(start), "", c.signal("relay", "", syscall.SIGCONT)
	}
	return 0, "", fmt.Errorf("unknown fault %q", what)
}

// signal sends sig to the process running bin/name (with FUNCTION_TARGET
// target, when given).
func (c *chaos) signal(name, target string, sig syscall.Signal) error {
	want := filepath.Join(c.bin, name)
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err != nil || exe != want {
			continue
		}
		if target != "" {
			env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
			if !strings.Contains("\x00"+string(env)+"\x00", "\x00FUNCTION_TARGET="+target+"\x00") {
				continue
			}
		}
		return syscall.Kill(pid, sig)
	}
	return errors.New("no " + strings.TrimSpace(name+" "+target) + " process of this run")
}

func (c *chaos) report() []fault {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]fault(nil), c.faults...)
}
