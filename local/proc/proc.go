// Package proc starts child processes in their own process groups and
// stops them, children of children included, so a local run leaves no
// orphan (the Firestore emulator's Java process above all).
package proc

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Group is a set of child processes.
type Group struct {
	mu      sync.Mutex
	procs   []*Proc
	stopped bool // StopAll ran: nothing starts any more
}

// Proc is one child.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start runs name with args and env (added to this process's), output to out.
func (g *Group) Start(label string, out io.Writer, env []string, name string, args ...string) (*Proc, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return nil, fmt.Errorf("start %s: the group is stopping", label)
	}
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", label, err)
	}
	p := &Proc{Name: label, Cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	g.procs = append(g.procs, p)
	return p, nil
}

// Done is closed when the process exits.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the exit error once Done is closed.
func (p *Proc) Err() error { return p.err }

// Stop sends SIGTERM to the process group, waits up to grace, then SIGKILLs
// the group.
func (p *Proc) Stop(grace time.Duration) {
	pgid := p.Cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-p.done
	// Children of the child (the emulator's Java) die asynchronously: wait
	// until the group is gone, so its ports are free when Stop returns.
	for i := 0; i < 100 && syscall.Kill(-pgid, 0) == nil; i++ {
		time.Sleep(50 * time.Millisecond)
	}
}

// StopAll stops every process, last started first; nothing starts in the
// group afterwards (a Keep that would restart a child gives up).
func (g *Group) StopAll(grace time.Duration) {
	g.mu.Lock()
	g.stopped = true
	procs := append([]*Proc(nil), g.procs...)
	g.procs = nil
	g.mu.Unlock()
	var wg sync.WaitGroup
	for i := len(procs) - 1; i >= 0; i-- {
		wg.Add(1)
		go func(p *Proc) { defer wg.Done(); p.Stop(grace) }(procs[i])
	}
	wg.Wait()
}

// Each calls f for every running process.
func (g *Group) Each(f func(*Proc)) {
	g.mu.Lock()
	procs := append([]*Proc(nil), g.procs...)
	g.mu.Unlock()
	for _, p := range procs {
		f(p)
	}
}

// Restart backoff of Keep.
const (
	RestartFirst = time.Second
	RestartMax   = 30 * time.Second
	// StayedUp is how long a restarted child must run for the backoff to
	// start again from RestartFirst.
	StayedUp = 30 * time.Second
)

// Keep starts a child like Start, and starts it again whenever it exits,
// as Cloud Run replaces a crashed instance: after RestartFirst, doubling up
// to RestartMax while it keeps failing, from RestartFirst again once it
// stayed up for StayedUp. say gets one line per start and per exit. It
// stops restarting once ctx ends (StopAll stops the child that runs). It
// returns the first start's child, or why it could not start.
func (g *Group) Keep(ctx context.Context, say func(string), label string, out io.Writer, env []string, name string, args ...string) (*Proc, error) {
	p, err := g.Start(label, out, env, name, args...)
	if err != nil {
		return nil, err
	}
	say(fmt.Sprintf("%s started (pid %d)", label, p.Cmd.Process.Pid))
	go func() {
		wait := RestartFirst
		for cur := p; ; {
			started := time.Now()
			select {
			case <-ctx.Done():
				return
			case <-cur.Done():
			}
			if ctx.Err() != nil {
				return
			}
			if time.Since(started) >= StayedUp {
				wait = RestartFirst
			}
			say(fmt.Sprintf("%s exited (%v); starting it again in %v", label, cur.Err(), wait))
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, RestartMax)
			next, err := g.Start(label, out, env, name, args...)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				say(fmt.Sprintf("%s could not be started again: %v", label, err))
				continue // cur has exited: wait out the next backoff
			}
			say(fmt.Sprintf("%s started (pid %d)", label, next.Cmd.Process.Pid))
			cur = next
		}
	}()
	return p, nil
}

// FreePort returns a free loopback TCP port in 20000–31999, below Linux's
// ephemeral range, so no listener on port 0 elsewhere takes it before its
// user binds it.
func FreePort() (int, error) { return FreePortWith() }

// FreePortWith is FreePort for a port p whose p + offset is free too, for
// every offset given (the local run puts a function's metrics at p + 1000).
func FreePortWith(offsets ...int) (int, error) {
	top := 32000 - slices.Max(append(offsets, 0))
	for range 200 {
		p := 20000 + rand.IntN(top-20000)
		if free(p) && !slices.ContainsFunc(offsets, func(off int) bool { return !free(p + off) }) {
			return p, nil
		}
	}
	return 0, fmt.Errorf("no free port in 20000-%d with %v free beside it", top-1, offsets)
}

func free(port int) bool {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// Rabbitmqctl returns the command that runs rabbitmqctl with args against
// the broker in use: $RABBITMQCTL split on spaces (the RabbitMQ 4.3 run sets
// "local/rabbitmq43/rabbitmq43.sh ctl"), or the machine's rabbitmqctl.
func Rabbitmqctl(args ...string) *exec.Cmd {
	cmd := strings.Fields(os.Getenv("RABBITMQCTL"))
	if len(cmd) == 0 {
		cmd = []string{"rabbitmqctl"}
	}
	return exec.Command(cmd[0], append(cmd[1:], args...)...)
}
