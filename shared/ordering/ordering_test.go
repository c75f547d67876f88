package ordering

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ordertimeout/ordertimeout/shared/domain"
	"github.com/ordertimeout/ordertimeout/shared/timeout"
)

// In-memory fakes of the service's ports, following the rules of their
// Firestore and HTTP adapters (store.ClaimKey, store.CreateOrder,
// DeductStock's /restore with onlyIfNoOrder).

type fakeOrders struct {
	mu     sync.Mutex
	orders map[string]domain.Order
	// commitThenFail: CreateOrder stores the order and still reports an
	// error, as a commit whose answer the caller never saw.
	commitThenFail bool
	failWrite      bool
	failRead       bool
}

func (f *fakeOrders) CreateOrder(_ context.Context, o domain.Order) (domain.Order, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failWrite {
		return domain.Order{}, false, fmt.Errorf("%w: write failed", domain.ErrUnavailable)
	}
	if old, ok := f.orders[o.ID]; ok {
		return old, false, nil
	}
	f.orders[o.ID] = o
	if f.commitThenFail {
		return domain.Order{}, false, fmt.Errorf("%w: context deadline exceeded", domain.ErrUnavailable)
	}
	return o, true, nil
}

func (f *fakeOrders) Order(_ context.Context, id string) (domain.Order, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failRead {
		return domain.Order{}, fmt.Errorf("%w: read failed", domain.ErrUnavailable)
	}
	o, ok := f.orders[id]
	if !ok {
		return domain.Order{}, domain.ErrNotFound
	}
	return o, nil
}

func (f *fakeOrders) UpdateOrder(context.Context, string, func(*domain.Order) domain.Change) (domain.Order, domain.Change, error) {
	return domain.Order{}, domain.NoOp, errors.New("not used")
}

func (f *fakeOrders) ListOrders(context.Context, string, domain.OrderStatus, int, *domain.Order) ([]domain.Order, error) {
	return nil, nil
}

type lease struct {
	orderID, hash string
	state         domain.LeaseState
	until         time.Time
}

type fakeKeys struct {
	mu     sync.Mutex
	leases map[string]*lease
	now    func() time.Time
}

func (f *fakeKeys) ClaimKey(_ context.Context, userID, key, hash, newOrderID string, until time.Time) (domain.Lease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l, ok := f.leases[userID+"/"+key]; ok {
		if l.hash != hash {
			return domain.Lease{}, domain.ErrIdempotencyMismatch
		}
		if l.state == domain.LeaseDone || (l.state == domain.LeasePending && f.now().Before(l.until)) {
			return domain.Lease{OrderID: l.orderID, State: l.state}, nil
		}
	}
	f.leases[userID+"/"+key] = &lease{orderID: newOrderID, hash: hash, state: domain.LeasePending, until: until}
	return domain.Lease{OrderID: newOrderID, Owned: true, State: domain.LeasePending}, nil
}

func (f *fakeKeys) SettleKey(_ context.Context, userID, key, orderID string, state domain.LeaseState) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l := f.leases[userID+"/"+key]; l != nil && l.orderID == orderID {
		l.state = state
	}
	return nil
}

type fakeStock struct {
	mu       sync.Mutex
	orders   *fakeOrders
	reserved map[string]bool // order id → reservation live
	released []string
	failRel  bool
	refuse   error
}

func (f *fakeStock) Reserve(_ context.Context, orderID string, wants []domain.Want) ([]domain.OrderLine, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse != nil {
		return nil, f.refuse
	}
	f.reserved[orderID] = true
	lines := make([]domain.OrderLine, len(wants))
	for i, w := range wants {
		lines[i] = domain.OrderLine{ItemID: w.ItemID, Quantity: w.Quantity, PriceCents: 100}
	}
	return lines, nil
}

func (f *fakeStock) Release(_ context.Context, orderID string) (bool, error) {
	if f.failRel {
		return false, fmt.Errorf("%w: DeductStock down", domain.ErrUnavailable)
	}
	f.orders.mu.Lock()
	_, exists := f.orders.orders[orderID]
	f.orders.mu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	if exists || !f.reserved[orderID] {
		return false, nil
	}
	f.reserved[orderID] = false
	f.released = append(f.released, orderID)
	return true, nil
}

type fakeCart struct{}

func (fakeCart) Clear(context.Context, string, []string) error { return nil }

type fakeTimers struct{ fail bool }

func (f fakeTimers) ScheduleTimeout(context.Context, string, time.Time) error {
	if f.fail {
		return errors.New("broker down")
	}
	return nil
}
func (fakeTimers) ScheduleCheck(context.Context, string, time.Time, time.Time) error { return nil }
func (fakeTimers) ScheduleReminder(context.Context, string, time.Time, time.Time) error {
	return nil
}

type fakeCloser struct{}

func (fakeCloser) Cancel(_ context.Context, o domain.Order, reason string) (domain.Order, timeout.Outcome, error) {
	o.Status, o.CancelReason = domain.OrderCancelled, reason
	return o, timeout.Cancelled, nil
}

type fakeAllowances struct {
	mu       sync.Mutex
	held     map[string]bool
	refuse   error
	released []string
}

func (f *fakeAllowances) Limits(context.Context, []string) (map[string]int64, error) {
	return map[string]int64{}, nil
}

func (f *fakeAllowances) ClaimAllowance(_ context.Context, _, orderID string, _ []domain.Want, _ map[string]int64, _ int, _ time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse != nil {
		return f.refuse
	}
	f.held[orderID] = true
	return nil
}

func (f *fakeAllowances) ReleaseAllowance(_ context.Context, _, orderID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.held, orderID)
	f.released = append(f.released, orderID)
	return nil
}

type fixture struct {
	svc    *Service
	orders *fakeOrders
	stock  *fakeStock
	allow  *fakeAllowances
}

func newFixture() fixture {
	now := time.Now
	orders := &fakeOrders{orders: map[string]domain.Order{}}
	stock := &fakeStock{orders: orders, reserved: map[string]bool{}}
	allow := &fakeAllowances{held: map[string]bool{}}
	svc := &Service{
		Orders: orders, Keys: &fakeKeys{leases: map[string]*lease{}, now: now}, Stock: stock, Cart: fakeCart{},
		Timers: fakeTimers{}, Closer: fakeCloser{}, Allowances: allow,
		Settings: Settings{TimeoutDefault: time.Minute, TimeoutMin: time.Second, TimeoutMax: time.Hour, SagaBudget: time.Minute, CallTimeout: 10 * time.Millisecond, MaxUnpaid: 10},
	}
	return fixture{svc: svc, orders: orders, stock: stock, allow: allow}
}

func (f fixture) create(t *testing.T, key string) (domain.Order, bool, error) {
	t.Helper()
	req, err := f.svc.NewCreate("alice", []domain.Want{{ItemID: "i1", Quantity: 1}}, nil, key)
	if err != nil {
		t.Fatal(err)
	}
	return f.svc.Create(context.Background(), req)
}

// A write that committed while its caller saw an error is the create's
// answer: the order keeps its stock and its allowance, and a retry with
// the same Idempotency-Key answers the same order (never a second one).
func TestCommittedWriteAnswersItsOrder(t *testing.T) {
	f := newFixture()
	f.orders.commitThenFail = true
	o, created, err := f.create(t, "k1")
	if err != nil || !created || o.ID == "" {
		t.Fatalf("create whose write committed: %+v %v %v", o, created, err)
	}
	if len(f.stock.released) != 0 || len(f.allow.released) != 0 {
		t.Fatalf("stock or allowance given back for a written order: %v %v", f.stock.released, f.allow.released)
	}
	f.orders.commitThenFail = false
	again, created, err := f.create(t, "k1")
	if err != nil || created || again.ID != o.ID {
		t.Fatalf("retry with the same key: %+v %v %v, want order %s", again, created, err, o.ID)
	}
	if len(f.orders.orders) != 1 {
		t.Fatalf("%d orders for one key", len(f.orders.orders))
	}
}

// The create saga's failure paths: what is given back, what the key
// becomes, and what a retry with the same key does.
func TestCreateCompensation(t *testing.T) {
	for _, c := range []struct {
		name       string
		setup      func(f fixture)
		wantErr    error
		stockBack  bool
		allowBack  bool
		retryFresh bool // a retry with the key may create (the key was freed)
	}{
		{"stock refused", func(f fixture) { f.stock.refuse = domain.ErrInsufficientStock }, domain.ErrInsufficientStock, false, true, true},
		{"limit refused", func(f fixture) { f.allow.refuse = domain.ErrTooManyUnpaid }, domain.ErrTooManyUnpaid, false, false, true},
		{"broker down", func(f fixture) { f.svc.Timers = fakeTimers{fail: true} }, domain.ErrUnavailable, true, true, true},
		{"order write failed", func(f fixture) { f.orders.failWrite = true }, domain.ErrUnavailable, true, true, true},
		{"write failed, release and read fail: outcome unknown", func(f fixture) {
			f.orders.failWrite, f.orders.failRead, f.stock.failRel = true, true, true
		}, domain.ErrUnavailable, false, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture()
			c.setup(f)
			_, _, err := f.create(t, "k")
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("error %v, want %v", err, c.wantErr)
			}
			if got := len(f.stock.released) > 0; got != c.stockBack {
				t.Errorf("stock given back: %v, want %v", got, c.stockBack)
			}
			if got := len(f.allow.released) > 0; got != c.allowBack {
				t.Errorf("allowance given back: %v, want %v", got, c.allowBack)
			}
			if len(f.orders.orders) != 0 {
				t.Fatalf("an order exists after a failed create")
			}
			*f.orders = fakeOrders{orders: f.orders.orders}
			f.stock.refuse, f.stock.failRel, f.allow.refuse = nil, false, nil
			f.svc.Timers = fakeTimers{}
			_, _, err = f.create(t, "k")
			if fresh := err == nil; fresh != c.retryFresh {
				t.Fatalf("retry with the same key: %v (fresh create expected: %v)", err, c.retryFresh)
			}
		})
	}
}

// stuckKeys is a key store whose settle hangs until its context ends, as
// a Firestore that stopped answering would.
type stuckKeys struct {
	*fakeKeys
	hadDeadline bool
}

func (s *stuckKeys) SettleKey(ctx context.Context, _, _, _ string, _ domain.LeaseState) error {
	_, s.hadDeadline = ctx.Deadline()
	<-ctx.Done()
	return ctx.Err()
}

// The key's settle after a create runs on a context of its own with a
// deadline (the caller's may have none, or have ended): a store that
// hangs cannot hold the answer.
func TestKeySettleIsBounded(t *testing.T) {
	f := newFixture()
	keys := &stuckKeys{fakeKeys: f.svc.Keys.(*fakeKeys)}
	f.svc.Keys = keys
	f.svc.Settings.CallTimeout = 200 * time.Millisecond
	start := time.Now()
	if _, _, err := f.create(t, "k"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); !keys.hadDeadline || took > 5*time.Second {
		t.Fatalf("settle had a deadline: %v; the create took %v", keys.hadDeadline, took)
	}
}
