package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ordertimeout/ordertimeout/local/testenv"
	"github.com/ordertimeout/ordertimeout/shared/broker"
)

// syncBuffer is a bytes.Buffer safe for one writer and readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) WriteString(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.WriteString(v)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The README's run command, end to end: every process comes up on the
// chosen ports, an order is created and paid, another times out and gives
// its stock back, and SIGTERM leaves no process and no port behind.
// started is a running `make run` binary.
type started struct {
	cmd     *exec.Cmd
	out     *syncBuffer
	ports   map[string]int
	root    string
	stopped bool
}

// startRun builds and starts the run binary on free ports and waits for
// READY; it is killed with its process group when t ends.
func startRun(t *testing.T) *started {
	t.Helper()
	testenv.AMQPURL(t)
	root, _ := filepath.Abs("../../..")
	bin := filepath.Join(t.TempDir(), "run")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ports := map[string]int{}
	prefix := testenv.UniqueName("ot-run")
	env := []string{"BROKER_PREFIX=" + prefix}
	t.Cleanup(func() { _ = testenv.OnAMQPChannel(testenv.AMQPURL(t), broker.Topology{Prefix: prefix}.Delete) })
	taken := map[int]bool{} // every port and its metrics port (+1000): two picks must not overlap
	for _, name := range []string{"PORT_CREATEORDER", "PORT_DEDUCTSTOCK", "PORT_CLEARCART", "PORT_PAY", "PORT_HANDLETIMEOUT", "PORT_RELAY", "PORT_SWEEP"} {
		var p int
		for p == 0 || taken[p] || taken[p+1000] {
			var err error
			if p, err = testenv.StablePort(); err != nil {
				t.Fatal(err)
			}
		}
		taken[p], taken[p+1000] = true, true
		ports[name] = p
		env = append(env, fmt.Sprintf("%s=%d", name, p))
	}
	cmd := exec.Command(bin)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	cmd.Env = append(cmd.Env, "FIRESTORE_EMULATOR_HOST=")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	st := &started{cmd: cmd, ports: ports, root: root}
	t.Cleanup(func() {
		if st.stopped {
			return
		}
		// SIGTERM first: run stops its children (each in a process group
		// of its own) and only then exits; a SIGKILL of run alone would
		// orphan them, and their relay would declare the topology again
		// after this test deleted it.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	out := &syncBuffer{} // written by the reader below, read here
	st.out = out
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if sc.Text() == "READY" {
				ready <- true
			}
		}
		close(ready)
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("run exited before READY:\n%s", out.String())
		}
	case <-time.After(3 * time.Minute):
		t.Fatalf("no READY within 3 minutes:\n%s", out.String())
	}
	return st
}

func TestRunWholeSystem(t *testing.T) {
	st := startRun(t)
	cmd, out, ports, root := st.cmd, st.out, st.ports, st.root
	alice := regexp.MustCompile(`export ALICE=(\S+)`).FindStringSubmatch(out.String())
	if alice == nil {
		t.Fatalf("no token for alice in:\n%s", out.String())
	}
	url := func(name string) string { return fmt.Sprintf("http://127.0.0.1:%d", ports[name]) }
	call := func(method, u, body string) (int, map[string]any) {
		req, _ := http.NewRequest(method, u, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+alice[1])
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		var m map[string]any
		_ = json.Unmarshal(data, &m)
		return resp.StatusCode, m
	}
	code, o := call("POST", url("PORT_CREATEORDER")+"/", `{"items":[{"itemId":"mug","quantity":2}],"paymentTimeoutSeconds":60}`)
	if code != 201 {
		t.Fatalf("create: %d %v", code, o)
	}
	if code, p := call("POST", url("PORT_PAY")+"/", fmt.Sprintf(`{"orderId":%q}`, o["orderId"])); code != 200 {
		t.Fatalf("pay: %d %v", code, p)
	}
	waitOrder := func(id, want string) {
		deadline := time.Now().Add(20 * time.Second)
		for {
			_, got := call("GET", url("PORT_CREATEORDER")+"/"+id, "")
			if got["status"] == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("order %s is %v, want %s", id, got["status"], want)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitOrder(o["orderId"].(string), "PAID")
	// Each function serves its metrics in Prometheus text at its port + 1000.
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", ports["PORT_CREATEORDER"]+1000))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "orders_created_total") {
		t.Fatalf("CreateOrder metrics lack orders_created_total:\n%.2000s", body)
	}
	// kill -9 of the relay and of a function: both are started again, as
	// Cloud Run replaces a crashed instance, and the console says so.
	for _, name := range []string{"relay", "CreateOrder"} {
		m := regexp.MustCompile(name + ` started \(pid (\d+)\)`).FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("no start line for %s in:\n%s", name, out.String())
		}
		pid, _ := strconv.Atoi(m[1])
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	restarted := time.Now().Add(30 * time.Second)
	for !(strings.Count(out.String(), "relay started") == 2 && strings.Count(out.String(), "CreateOrder started") == 2) {
		if time.Now().After(restarted) {
			t.Fatalf("the killed processes were not started again:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(out.String(), "relay exited (signal: killed); starting it again in 1s") {
		t.Fatalf("no restart line for the relay:\n%s", out.String())
	}
	for {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", ports["PORT_CREATEORDER"]), time.Second); err == nil {
			c.Close()
			break
		}
		if time.Now().After(restarted) {
			t.Fatal("CreateOrder does not listen again after its restart")
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, tea := call("GET", url("PORT_DEDUCTSTOCK")+"/tea", "")
	code, o2 := call("POST", url("PORT_CREATEORDER")+"/", `{"items":[{"itemId":"tea","quantity":3}],"paymentTimeoutSeconds":2}`)
	if code != 201 {
		t.Fatalf("create: %d %v", code, o2)
	}
	waitOrder(o2["orderId"].(string), "CANCELLED")
	if _, after := call("GET", url("PORT_DEDUCTSTOCK")+"/tea", ""); after["stock"] != tea["stock"] {
		t.Fatalf("tea stock %v after timeout, was %v", after["stock"], tea["stock"])
	}
	// The smoke command, as an operator runs it after a deploy, here
	// against the local run.
	smoke := exec.Command("go", "run", "./local/cmd/smoke", "-env", filepath.Join(root, ".run", "env"), "-timeout", "2s", "-grace", "40s")
	smoke.Dir = root
	if out, err := smoke.CombinedOutput(); err != nil || !strings.Contains(string(out), "smoke test passed") {
		t.Fatalf("smoke: %v\n%s", err, out)
	}

	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		st.stopped = true
		if err != nil {
			t.Fatalf("run exited with %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("run did not stop within 60 s of SIGTERM")
	}
	for name, p := range ports {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p), time.Second); err == nil {
			c.Close()
			t.Errorf("%s port %d still open after stop", name, p)
		}
	}
	if m := regexp.MustCompile(`Firestore emulator at (\S+)`).FindStringSubmatch(out.String()); m != nil {
		if c, err := net.DialTimeout("tcp", m[1], time.Second); err == nil {
			c.Close()
			t.Errorf("the emulator at %s outlived run", m[1])
		}
	}
}

// What the run cannot replace stops it, clearly: the Firestore emulator
// killed with kill -9 ends the run with a message that says so.
func TestRunStopsWhenTheEmulatorDies(t *testing.T) {
	st := startRun(t)
	m := regexp.MustCompile(`Firestore emulator at \S+ \(pid (\d+)\)`).FindStringSubmatch(st.out.String())
	if m == nil {
		t.Fatalf("no emulator pid in:\n%s", st.out.String())
	}
	pid, _ := strconv.Atoi(m[1])
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- st.cmd.Wait() }()
	select {
	case err := <-done:
		st.stopped = true
		if err == nil {
			t.Fatal("run exited 0 after its emulator died")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("run still running a minute after its emulator died")
	}
	if !strings.Contains(st.out.String(), "stopped.") {
		t.Fatalf("run did not stop its children:\n%s", st.out.String())
	}
}
