// Package testenv gives integration tests the real services they need: the
// Firestore emulator (started here when FIRESTORE_EMULATOR_HOST is unset) and
// RabbitMQ at AMQP_URL. A missing service fails the test with a message that
// says how to start it; nothing is skipped silently.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/ordertimeout/ordertimeout/local/emulator"
	"github.com/ordertimeout/ordertimeout/local/proc"
	"github.com/ordertimeout/ordertimeout/shared/store"
)

// DefaultAMQPURL is used when AMQP_URL is unset.
const DefaultAMQPURL = "amqp://guest:guest@127.0.0.1:5672/"

var (
	emuMu    sync.Mutex
	emuGroup proc.Group
)

// emulatorRun is one kind of emulator a test process shares: the one
// FIRESTORE_EMULATOR_HOST (PUBSUB_EMULATOR_HOST) names, or one it starts.
type emulatorRun struct {
	env, name, command string // its variable, its name, the gcloud command that starts one
	start              func(*proc.Group, io.Writer) (*emulator.Emulator, error)
	host               string
	err                error
}

var (
	firestoreRun = &emulatorRun{env: "FIRESTORE_EMULATOR_HOST", name: "Firestore", command: "gcloud emulators firestore start", start: emulator.Start}
	pubsubRun    = &emulatorRun{env: "PUBSUB_EMULATOR_HOST", name: "Pub/Sub", command: "gcloud beta emulators pubsub start", start: emulator.StartPubSub}
)

// hostFor returns the emulator's host:port, starting one when its variable
// is unset; the first call that starts it sets the variable for the whole
// process.
func (r *emulatorRun) hostFor(t testing.TB) string {
	t.Helper()
	emuMu.Lock()
	defer emuMu.Unlock()
	if h := os.Getenv(r.env); h != "" && r.host == "" {
		if err := emulator.Ready(h, 5*time.Second, nil); err != nil {
			t.Fatalf("%s=%s does not answer (%v); start one with `%s --host-port=%s`, or unset the variable to let the tests start their own", r.env, h, err, r.command, h)
		}
		r.host = h
	}
	if r.host == "" && r.err == nil {
		r.host, r.err = r.run()
	}
	if r.err != nil {
		t.Fatalf("%s emulator: %v", r.name, r.err)
	}
	return r.host
}

func (r *emulatorRun) run() (string, error) {
	log, err := os.CreateTemp("", strings.ToLower(strings.ReplaceAll(r.name, "/", ""))+"-emulator-*.log")
	if err != nil {
		return "", err
	}
	e, err := r.start(&emuGroup, log)
	if err != nil {
		return "", fmt.Errorf("%w; its log: %s", err, log.Name())
	}
	os.Setenv(r.env, e.Host)
	return e.Host, nil
}

// Main wraps testing.M.Run: it stops an emulator this process started, with
// its whole process group, whatever the tests did. Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	StopEmulator()
	return code
}

// FirestoreHost returns the Firestore emulator's host:port, starting one
// when FIRESTORE_EMULATOR_HOST is unset. The first call that starts it sets
// FIRESTORE_EMULATOR_HOST for the whole process.
func FirestoreHost(t testing.TB) string { t.Helper(); return firestoreRun.hostFor(t) }

// PubSubHost returns the Pub/Sub emulator's host:port, starting one when
// PUBSUB_EMULATOR_HOST is unset; the first call that starts it sets
// PUBSUB_EMULATOR_HOST for the whole process.
func PubSubHost(t testing.TB) string { t.Helper(); return pubsubRun.hostFor(t) }

// StopEmulator stops the emulators this process started (the gcloud
// wrappers and their Java children, by process group). It is safe to call more than once.
func StopEmulator() {
	emuMu.Lock()
	defer emuMu.Unlock()
	emuGroup.StopAll(5 * time.Second)
}

var unsafeChars = regexp.MustCompile(`[^a-z0-9-]+`)

// ProjectID returns a project id unique to this test, so tests sharing one
// emulator never see each other's documents.
func ProjectID(t testing.TB) string {
	name := unsafeChars.ReplaceAllString(strings.ToLower(t.Name()), "-")
	if len(name) > 30 {
		name = name[:30]
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return strings.Trim("t-"+name, "-") + "-" + hex.EncodeToString(b)
}

// Store returns a store on the emulator in a fresh project for this test, and
// the project id. It is closed when the test ends.
func Store(t testing.TB) (*store.Store, string) {
	t.Helper()
	FirestoreHost(t)
	project := ProjectID(t)
	s, err := store.New(context.Background(), project)
	if err != nil {
		t.Fatalf("store: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, project
}

// StoreOn opens another client on project, as a second function instance
// would: its transactions contend with the first client's through Firestore.
func StoreOn(t testing.TB, project string) *store.Store {
	t.Helper()
	FirestoreHost(t)
	s, err := store.New(context.Background(), project)
	if err != nil {
		t.Fatalf("store: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// AMQPURL returns AMQP_URL (or the default) after checking that RabbitMQ
// answers there.
func AMQPURL(t testing.TB) string {
	t.Helper()
	url := os.Getenv("AMQP_URL")
	if url == "" {
		url = DefaultAMQPURL
	}
	var err error
	for i := 0; i < 20; i++ {
		var c *amqp.Connection
		if c, err = amqp.Dial(url); err == nil {
			_ = c.Close()
			return url
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("RabbitMQ is not reachable at %s (%v): start it with `rabbitmq-server -detached` or set AMQP_URL", url, err)
	return ""
}

// NativeEnv names the AMQP URL of a RabbitMQ 4.4+ node for the
// native-mode tests (BROKER_MODE=native); without it they skip.
const NativeEnv = "RABBITMQ44_URL"

// NativeAMQPURL returns $RABBITMQ44_URL, or skips the test: CI has no
// RabbitMQ 4.4 node (none is packaged yet; docs/operating.md says how one
// was built by hand).
func NativeAMQPURL(t testing.TB) string {
	t.Helper()
	url := os.Getenv(NativeEnv)
	if url == "" {
		t.Skipf("native mode needs a RabbitMQ 4.4+ node: set %s (make test-rabbitmq44)", NativeEnv)
	}
	c, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("%s=%s: %v", NativeEnv, url, err)
	}
	defer c.Close()
	var major, minor int
	v, _ := c.Properties["version"].(string)
	if n, _ := fmt.Sscanf(v, "%d.%d", &major, &minor); n != 2 || major < 4 || major == 4 && minor < 4 {
		t.Fatalf("%s names RabbitMQ %q, not 4.4 or later", NativeEnv, v)
	}
	return url
}

// AMQPChannel opens a connection and a channel to RabbitMQ at url for a
// test's own checks; the connection closes when tb ends.
func AMQPChannel(tb testing.TB, url string) *amqp.Channel {
	tb.Helper()
	conn, err := amqp.Dial(firstURL(url))
	if err != nil {
		tb.Fatalf("RabbitMQ at %s: %v", url, err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		tb.Fatalf("open a channel: %v", err)
	}
	return ch
}

// OnAMQPChannel dials RabbitMQ at url, runs fn on a new channel and closes
// the connection: for one-off topology declares and deletes, including
// cleanups after a broker outage closed every earlier connection.
func OnAMQPChannel(url string, fn func(*amqp.Channel) error) error {
	conn, err := amqp.Dial(firstURL(url))
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	return fn(ch)
}

// FreePort asks the kernel for a free TCP port on 127.0.0.1.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// StablePort returns a free port below Linux's ephemeral range (20000 to
// 30999), for a server another process will bind later: a port from
// FreePort could be taken meanwhile by some outgoing connection. The port
// + 1000 is free too (the local run puts metrics there).
func StablePort() (int, error) { return proc.FreePortWith(1000) }

// UniqueName returns prefix plus a random suffix, for queue and exchange names.
func UniqueName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// Rabbitmqctl is proc.Rabbitmqctl: rabbitmqctl against the broker in use.
func Rabbitmqctl(args ...string) *exec.Cmd { return proc.Rabbitmqctl(args...) }

// RabbitCtl runs rabbitmqctl on the local node and fails tb if it fails.
func RabbitCtl(tb testing.TB, args ...string) {
	tb.Helper()
	out, err := Rabbitmqctl(args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("rabbitmqctl %v: %v\n%s", args, err, out)
	}
}

// StopBroker stops the local RabbitMQ application (stop_app) and returns
// the function that starts it again. Until that has run, a cleanup starts
// it when tb ends, so a failing test never leaves the broker down.
func StopBroker(tb testing.TB) (start func()) {
	tb.Helper()
	started := false
	tb.Cleanup(func() {
		if !started {
			_ = Rabbitmqctl("start_app").Run()
		}
	})
	RabbitCtl(tb, "stop_app")
	return func() {
		tb.Helper()
		RabbitCtl(tb, "start_app")
		started = true
	}
}

// Proxy forwards TCP connections to an address until killed: a broker node
// that can die under a test.
type Proxy struct {
	l     net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

// NewProxy listens on a loopback port and forwards to `to`; it is killed
// when tb ends.
func NewProxy(tb testing.TB, to string) *Proxy {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &Proxy{l: l}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, b)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(b, c); b.Close() }()
			go func() { _, _ = io.Copy(c, b); c.Close() }()
		}
	}()
	tb.Cleanup(p.Kill)
	return p
}

// Addr is the address clients dial.
func (p *Proxy) Addr() string { return p.l.Addr().String() }

// Kill stops listening and cuts every connection: the node is gone.
func (p *Proxy) Kill() {
	p.l.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// firstURL is the first broker of a comma-separated AMQP_URL list.
func firstURL(list string) string {
	first, _, _ := strings.Cut(list, ",")
	return strings.TrimSpace(first)
}

// SilentBroker listens on loopback, accepts every TCP connection and never
// answers, as a frozen broker (SIGSTOP) or a black-holing proxy does, and
// returns an AMQP URL for it. It closes with tb.
func SilentBroker(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	tb.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "amqp://guest:guest@" + l.Addr().String() + "/"
}
