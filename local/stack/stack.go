// Package stack runs the whole system in one process for integration tests:
// each function behind its own real HTTP server, the real relay, the real
// Firestore emulator and the real RabbitMQ. Tests may stop and restart a
// function's server, and wrap the Pay announcer to drop announcements.
package stack

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ordertimeout/ordertimeout/functions/clearcart"
	"github.com/ordertimeout/ordertimeout/functions/createorder"
	"github.com/ordertimeout/ordertimeout/functions/deductstock"
	"github.com/ordertimeout/ordertimeout/functions/handletimeout"
	"github.com/ordertimeout/ordertimeout/functions/pay"
	sweepfn "github.com/ordertimeout/ordertimeout/functions/sweeper"
	"github.com/ordertimeout/ordertimeout/local/testenv"
	"github.com/ordertimeout/ordertimeout/shared/app"
	"github.com/ordertimeout/ordertimeout/shared/auth"
	"github.com/ordertimeout/ordertimeout/shared/broker"
	"github.com/ordertimeout/ordertimeout/shared/config"
	"github.com/ordertimeout/ordertimeout/shared/domain"
	"github.com/ordertimeout/ordertimeout/shared/events"
	"github.com/ordertimeout/ordertimeout/shared/logging"
	"github.com/ordertimeout/ordertimeout/shared/orderevents"
	"github.com/ordertimeout/ordertimeout/shared/ordering"
	"github.com/ordertimeout/ordertimeout/shared/relay"
	"github.com/ordertimeout/ordertimeout/shared/store"
	"github.com/ordertimeout/ordertimeout/shared/sweeper"
)

// Names of the functions.
const (
	CreateOrder   = "CreateOrder"
	DeductStock   = "DeductStock"
	ClearCart     = "ClearCart"
	Pay           = "Pay"
	HandleTimeout = "HandleTimeout"
	Sweep         = "Sweep"
)

// Options tweak a stack.
type Options struct {
	// DropAnnouncements makes Pay's "payment succeeded" announcements vanish.
	DropAnnouncements bool
	// NoRelay leaves the relay off (tests drive HandleTimeout themselves).
	NoRelay bool
	// CrashAfterReserve makes CreateOrder die right after the stock step,
	// as a process crash would: no order, no timer, no compensation.
	CrashAfterReserve bool
	// RelayBackoff is the relay's first retry delay (default 200ms).
	RelayBackoff time.Duration
	// AMQPURL is the broker (or a comma-separated list of a cluster's
	// nodes); default the test machine's.
	AMQPURL   string
	Configure func(*config.Config)
	// DeductStockInstances serves DeductStock's URL from this many
	// instances (default 1), each with its own Firestore client and its own
	// in-process locks, taking requests in turn, as Cloud Functions scales a
	// busy function out. They contend only through Firestore.
	DeductStockInstances int
	// CreateOrderBrokerURL, when set, is the broker CreateOrder schedules
	// its timers on (a broker that misbehaves on purpose), with the
	// publisher's timeout CreateOrderPublishTimeout (0: the default).
	CreateOrderBrokerURL      string
	CreateOrderPublishTimeout time.Duration
	// CreateOrderInstances serves CreateOrder's URL from this many
	// instances (default 1) in the same way, each with its own Firestore
	// client and in-process locks.
	CreateOrderInstances int
}

// Stack is a running system.
type Stack struct {
	T     testing.TB
	Cfg   config.Config
	Env   *app.Env
	Store *store.Store
	// StockStores are the DeductStock instances' stores (Store is the first).
	StockStores []*store.Store
	Topology    broker.Topology
	Publisher   *broker.Publisher
	Relay       *relay.Relay
	Sweeper     *sweeper.Sweeper
	AuthSecret  []byte

	evMu   sync.Mutex
	events []orderevents.Received

	mu      sync.Mutex
	servers map[string]*server
	cancels []context.CancelFunc
	relayWG sync.WaitGroup
}

// server is a real HTTP server on a fixed port that can be stopped and
// started again on the same address.
type server struct {
	addr    string
	handler http.Handler
	srv     *httptest.Server
	l       net.Listener // held from the start, so no other socket takes the port
}

func (s *server) start() error {
	l := s.l
	s.l = nil
	var err error
	for i := 0; l == nil; i++ {
		// A restart: the old port may still be in TIME_WAIT use for a moment.
		if l, err = net.Listen("tcp", s.addr); err != nil {
			if i == 50 {
				return err
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	s.srv = httptest.NewUnstartedServer(s.handler)
	s.srv.Listener.Close()
	s.srv.Listener = l
	s.srv.Start()
	return nil
}

// crashAfterReserve reserves, then aborts the request the way a crashed
// process would: nothing after the stock step runs.
type crashAfterReserve struct{ ordering.Stock }

func (c crashAfterReserve) Reserve(ctx context.Context, orderID string, wants []domain.Want) ([]domain.OrderLine, error) {
	if _, err := c.Stock.Reserve(ctx, orderID, wants); err != nil {
		return nil, err
	}
	panic(http.ErrAbortHandler)
}

// roundRobin hands requests to hs in turn.
func roundRobin(hs []http.Handler) http.Handler {
	if len(hs) == 1 {
		return hs[0]
	}
	var next atomic.Uint64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hs[(next.Add(1)-1)%uint64(len(hs))].ServeHTTP(w, r)
	})
}

// dropper announces nothing and reports success: a lost announcement.
type dropper struct{}

func (dropper) AnnouncePaid(context.Context, string, string, time.Time) error { return nil }

// Start brings the system up for t and tears it down when t ends. It wires
// the functions through app.Build, as production does, with the test's
// settings below.
func Start(t testing.TB, opt Options) *Stack {
	t.Helper()
	testenv.FirestoreHost(t)
	testenv.PubSubHost(t)
	project := testenv.ProjectID(t)
	amqpURL := opt.AMQPURL
	if amqpURL == "" {
		amqpURL = testenv.AMQPURL(t)
	}
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Project = project
	cfg.AuthMode, cfg.AuthSecret = config.AuthHS256, "test-user-secret-0123456789"
	cfg.InternalMode, cfg.InternalSecret = config.InternalSecret, "test-internal-secret-0123456789"
	cfg.AMQPURL = amqpURL
	cfg.BrokerPrefix = testenv.UniqueName("ot-test")
	cfg.CallTimeout = 5 * time.Second
	cfg.SweepSagaBudget = 10 * time.Second
	cfg.SweepGrace = 2 * time.Second
	// Most tests drive many orders per shopper; the shopper-limit tests
	// (and BenchmarkHotItem's limited setup) set the cap back on.
	cfg.MaxUnpaidPerShopper = 0
	cfg.EventsProject = project
	if opt.Configure != nil {
		opt.Configure(&cfg)
	}
	if cfg.EventsTopic != config.EventsOff {
		if err := orderevents.EnsureTopic(context.Background(), cfg.EventsProject, cfg.EventsTopic, "stack"); err != nil {
			t.Fatal(err)
		}
	}

	log := logging.New(io.Discard, slog.LevelInfo)
	if os.Getenv("STACK_LOG") != "" {
		log = logging.New(os.Stderr, slog.LevelDebug)
	}
	// Listen first: the functions call each other by URL.
	servers := map[string]*server{}
	for _, name := range []string{CreateOrder, DeductStock, ClearCart, Pay, HandleTimeout, Sweep} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		servers[name] = &server{addr: l.Addr().String(), l: l}
	}
	url := func(name string) string { return "http://" + servers[name].addr }
	cfg.DeductStockURL, cfg.ClearCartURL, cfg.PayURL = url(DeductStock), url(ClearCart), url(Pay)
	env, err := app.Build(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Store.Close() })
	// Tiers up to 2 min: each tier is a quorum queue to create and delete.
	topo := app.Topology(cfg)
	topo.Tiers = 10
	env.Publisher = broker.NewPublisher(amqpURL, topo)
	env.Timers = events.Timers{Publisher: env.Publisher}
	t.Cleanup(func() { _ = env.Publisher.Close() })
	s := &Stack{T: t, Cfg: cfg, Env: env, Store: env.Store, Topology: topo, Publisher: env.Publisher, AuthSecret: []byte(cfg.AuthSecret), servers: servers}
	if env.Events != nil {
		lctx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := orderevents.Listen(lctx, cfg.EventsProject, "stack", func(r orderevents.Received) {
				s.evMu.Lock()
				s.events = append(s.events, r)
				s.evMu.Unlock()
			}); err != nil {
				t.Errorf("order events subscription: %v", err)
			}
		}()
		t.Cleanup(func() { stop(); <-done })
	}

	var announce pay.Announcer = env.Timers
	if opt.DropAnnouncements {
		announce = dropper{}
	}
	svc := env.Ordering()
	if opt.CrashAfterReserve {
		svc.Stock = crashAfterReserve{svc.Stock}
	}
	if opt.CreateOrderBrokerURL != "" {
		p := broker.NewPublisher(opt.CreateOrderBrokerURL, topo)
		p.Timeout = opt.CreateOrderPublishTimeout
		t.Cleanup(func() { _ = p.Close() })
		svc.Timers = events.Timers{Publisher: p}
	}
	s.Sweeper = env.Sweeper()
	wrap := func(name string, h http.Handler) http.Handler { return app.Serve(name, log, project, h) }
	s.StockStores = []*store.Store{env.Store}
	for range max(opt.DeductStockInstances, 1) - 1 {
		st, err := store.New(context.Background(), project)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		s.StockStores = append(s.StockStores, st)
	}
	instances := make([]http.Handler, len(s.StockStores))
	for i, st := range s.StockStores {
		instances[i] = wrap(DeductStock, deductstock.New(st, env.Internal))
	}
	servers[DeductStock].handler = roundRobin(instances)
	servers[ClearCart].handler = wrap(ClearCart, clearcart.New(env.Store, env.Users, env.Internal))
	servers[Pay].handler = wrap(Pay, pay.New(env.Store, env.Users, env.Internal, announce))
	creates := []http.Handler{wrap(CreateOrder, createorder.New(svc, env.Users, env.Internal))}
	for range max(opt.CreateOrderInstances, 1) - 1 {
		st, err := store.New(context.Background(), project)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		if env.Events != nil {
			st.SetEventSink(env.Events)
		}
		st.SetRetention(cfg.OrderRetention)
		other := *env
		other.Store = st
		osvc := other.Ordering()
		osvc.Stock = svc.Stock
		creates = append(creates, wrap(CreateOrder, createorder.New(osvc, env.Users, env.Internal)))
	}
	servers[CreateOrder].handler = roundRobin(creates)
	servers[Sweep].handler = wrap(Sweep, sweepfn.New(s.Sweeper, env.Internal))
	servers[HandleTimeout].handler = handletimeout.New(env.Decider(), cfg, log, env.Internal).HTTPHandler()
	for name, srv := range servers {
		if err := srv.start(); err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
	}
	t.Cleanup(s.closeServers)

	// Declare the topology now, so publishes before the relay starts land.
	if err := testenv.OnAMQPChannel(amqpURL, s.Topology.Declare); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = testenv.OnAMQPChannel(amqpURL, s.Topology.Delete) })
	if !opt.NoRelay {
		backoff := opt.RelayBackoff
		if backoff == 0 {
			backoff = 200 * time.Millisecond
		}
		s.StartRelay(relay.Options{BackoffBase: backoff, BackoffMax: 2 * time.Second, Concurrency: 16, Log: log})
	}
	return s
}

// Events returns the order events received on the topic so far (every
// copy, in arrival order).
func (s *Stack) Events() []orderevents.Received {
	s.evMu.Lock()
	defer s.evMu.Unlock()
	return append([]orderevents.Received(nil), s.events...)
}

// WaitEvents waits until ok holds for the events received, or fails the
// test after within.
func (s *Stack) WaitEvents(within time.Duration, ok func([]orderevents.Received) bool) []orderevents.Received {
	s.T.Helper()
	deadline := time.Now().Add(within)
	for {
		evs := s.Events()
		if ok(evs) {
			return evs
		}
		if time.Now().After(deadline) {
			s.T.Fatalf("order events: condition not met within %v; received %d", within, len(evs))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// StartRelay runs a relay with opt (target, broker and token filled in);
// called again, it runs another beside it on the same queues, as Cloud Run
// does with several instances. Stack.Relay is the last one started.
func (s *Stack) StartRelay(opt relay.Options) *relay.Relay {
	opt.AMQPURL, opt.Topology = s.Cfg.AMQPURL, s.Topology
	if opt.Target == "" {
		opt.Target = s.URL(HandleTimeout)
	}
	if opt.Token == "" {
		opt.Token = s.Cfg.InternalSecret
	}
	if opt.Drain == 0 {
		opt.Drain = 5 * time.Second
	}
	r, err := relay.New(opt)
	if err != nil {
		s.T.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.mu.Lock()
	s.Relay = r
	s.cancels = append(s.cancels, cancel)
	s.mu.Unlock()
	s.relayWG.Add(1)
	go func() {
		defer s.relayWG.Done()
		_ = r.Run(ctx)
	}()
	s.T.Cleanup(s.StopRelay)
	return r
}

// StopRelay stops every relay StartRelay started, gracefully, and waits
// for them.
func (s *Stack) StopRelay() {
	s.mu.Lock()
	cancels := s.cancels
	s.cancels = nil
	s.mu.Unlock()
	for _, cancel := range cancels {
		cancel()
	}
	s.relayWG.Wait()
}

// URL is a function's base URL.
func (s *Stack) URL(name string) string { return "http://" + s.servers[name].addr }

// Stop closes a function's server (connections refused until Restart).
func (s *Stack) Stop(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	srv := s.servers[name]
	if srv.srv != nil {
		srv.srv.CloseClientConnections()
		srv.srv.Close()
		srv.srv = nil
	}
}

// Restart starts a stopped function's server on its old address.
func (s *Stack) Restart(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.servers[name].start(); err != nil {
		s.T.Fatalf("restart %s: %v", name, err)
	}
}

// closeServers stops every function's server. A server waits for its
// requests in flight; one stuck for a minute fails the test with every
// goroutine's stack instead of hanging it until the package's timeout.
func (s *Stack) closeServers() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for name := range s.servers {
			s.Stop(name)
		}
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		buf := make([]byte, 1<<20)
		s.T.Errorf("a function's server still has a request in flight a minute after it was told to stop:\n%s", buf[:runtime.Stack(buf, true)])
	}
}

// Token mints a user token.
func (s *Stack) Token(userID string) string {
	tok, err := auth.SignHS256(s.AuthSecret, userID, time.Hour)
	if err != nil {
		s.T.Fatal(err)
	}
	return tok
}
