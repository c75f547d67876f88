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
	"testing"
	"time"

	"github.com/ordertimeout/ordertimeout/functions/clearcart"
	"github.com/ordertimeout/ordertimeout/functions/createorder"
	"github.com/ordertimeout/ordertimeout/functions/deductstock"
	"github.com/ordertimeout/ordertimeout/functions/handletimeout"
	"github.com/ordertimeout/ordertimeout/functions/pay"
	sweepfn "github.com/ordertimeout/ordertimeout/functions/sweeper"
	"github.com/ordertimeout/ordertimeout/shared/app"
	"github.com/ordertimeout/ordertimeout/shared/auth"
	"github.com/ordertimeout/ordertimeout/shared/broker"
	"github.com/ordertimeout/ordertimeout/shared/clients"
	"github.com/ordertimeout/ordertimeout/shared/config"
	"github.com/ordertimeout/ordertimeout/shared/domain"
	"github.com/ordertimeout/ordertimeout/shared/logging"
	"github.com/ordertimeout/ordertimeout/shared/relay"
	"github.com/ordertimeout/ordertimeout/shared/store"
	"github.com/ordertimeout/ordertimeout/shared/sweeper"
	"github.com/ordertimeout/ordertimeout/shared/testenv"
	"github.com/ordertimeout/ordertimeout/shared/timeout"
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
	Configure    func(*config.Config)
}

// Stack is a running system.
type Stack struct {
	T          testing.TB
	Cfg        config.Config
	Store      *store.Store
	Topology   broker.Topology
	Publisher  *broker.Publisher
	Relay      *relay.Relay
	Sweeper    *sweeper.Sweeper
	AuthSecret []byte

	mu      sync.Mutex
	servers map[string]*server
	cancel  context.CancelFunc
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
type crashAfterReserve struct{ createorder.Stock }

func (c crashAfterReserve) Reserve(ctx context.Context, orderID string, wants []domain.Want) ([]domain.OrderLine, error) {
	if _, err := c.Stock.Reserve(ctx, orderID, wants); err != nil {
		return nil, err
	}
	panic(http.ErrAbortHandler)
}

// dropper publishes nothing and reports success: a lost announcement.
type dropper struct{}

func (dropper) Publish(context.Context, broker.Message) error { return nil }

// Start brings the system up for t and tears it down when t ends.
func Start(t testing.TB, opt Options) *Stack {
	t.Helper()
	st, project := testenv.Store(t)
	amqpURL := testenv.AMQPURL(t)
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
	if opt.Configure != nil {
		opt.Configure(&cfg)
	}
	s := &Stack{T: t, Cfg: cfg, Store: st, Topology: app.Topology(cfg), AuthSecret: []byte(cfg.AuthSecret), servers: map[string]*server{}}
	s.Topology.Tiers = 10 // tiers up to 2 min: each tier is a quorum queue to create and delete
	s.Publisher = broker.NewPublisher(amqpURL, s.Topology)
	t.Cleanup(func() { _ = s.Publisher.Close() })

	log := logging.New(io.Discard, slog.LevelInfo)
	if os.Getenv("STACK_LOG") != "" {
		log = logging.New(os.Stderr, slog.LevelDebug)
	}
	users := auth.HS256{Secret: s.AuthSecret}
	internal := auth.SharedSecret{Secret: cfg.InternalSecret}
	signer := auth.SecretSigner{Secret: cfg.InternalSecret}

	// Listen first: the functions call each other by URL.
	for _, name := range []string{CreateOrder, DeductStock, ClearCart, Pay, HandleTimeout, Sweep} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s.servers[name] = &server{addr: l.Addr().String(), l: l}
	}
	client := func(name string) *clients.Client { return clients.New(s.URL(name), signer, cfg.CallTimeout) }
	var announce timeout.Publisher = s.Publisher
	if opt.DropAnnouncements {
		announce = dropper{}
	}
	wrap := func(name string, h http.Handler) http.Handler { return app.Serve(name, log, project, h) }
	s.servers[DeductStock].handler = wrap(DeductStock, deductstock.New(st, internal))
	s.servers[ClearCart].handler = wrap(ClearCart, clearcart.New(st, users, internal))
	s.servers[Pay].handler = wrap(Pay, pay.New(st, users, internal, announce))
	var stock createorder.Stock = clients.Stock{C: client(DeductStock)}
	if opt.CrashAfterReserve {
		stock = crashAfterReserve{stock}
	}
	s.servers[CreateOrder].handler = wrap(CreateOrder, createorder.New(createorder.Deps{
		Store: st, Users: users, Internal: internal, Publisher: s.Publisher, Cfg: cfg,
		Stock: stock, Cart: clients.Cart{C: client(ClearCart)},
	}))
	decider := &timeout.Decider{
		Orders: st, Pay: clients.Pay{C: client(Pay)}, Stock: clients.Stock{C: client(DeductStock)},
		Publisher: s.Publisher, SagaBudget: cfg.SweepSagaBudget,
	}
	ht := handletimeout.New(decider, cfg, log)
	s.Sweeper = &sweeper.Sweeper{Find: st, Decider: decider, Grace: cfg.SweepGrace, SagaBudget: cfg.SweepSagaBudget, PageSize: 50, MaxPages: 20}
	s.servers[Sweep].handler = wrap(Sweep, sweepfn.New(s.Sweeper, internal))
	s.servers[HandleTimeout].handler = ht.HTTPHandler()
	for name, srv := range s.servers {
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

// StartRelay runs a relay with opt (target, broker and token filled in).
func (s *Stack) StartRelay(opt relay.Options) *relay.Relay {
	opt.AMQPURL, opt.Topology, opt.Target = s.Cfg.AMQPURL, s.Topology, s.URL(HandleTimeout)
	if opt.Token == "" {
		opt.Token = s.Cfg.InternalSecret
	}
	if opt.Drain == 0 {
		opt.Drain = 5 * time.Second
	}
	r := relay.New(opt)
	ctx, cancel := context.WithCancel(context.Background())
	s.mu.Lock()
	s.Relay, s.cancel = r, cancel
	s.mu.Unlock()
	s.relayWG.Add(1)
	go func() {
		defer s.relayWG.Done()
		_ = r.Run(ctx)
	}()
	s.T.Cleanup(s.StopRelay)
	return r
}

// StopRelay stops the relay gracefully and waits for it.
func (s *Stack) StopRelay() {
	s.mu.Lock()
	cancel := s.cancel
	s.cancel = nil
	s.mu.Unlock()
	if cancel != nil {
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
