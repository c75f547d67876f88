// Package proc starts child processes in their own process groups and
// stops them, children of children included, so a local run leaves no
// orphan (the Firestore emulator's Java process above all).
package proc

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Group is a set of child processes.
type Group struct {
	mu    sync.Mutex
	procs []*Proc
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
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", label, err)
	}
	p := &Proc{Name: label, Cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	g.mu.Lock()
	g.procs = append(g.procs, p)
	g.mu.Unlock()
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

// StopAll stops every process, last started first.
func (g *Group) StopAll(grace time.Duration) {
	g.mu.Lock()
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
