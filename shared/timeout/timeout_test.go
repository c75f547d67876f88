package timeout

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ordertimeout/ordertimeout/shared/domain"
)

// In-memory fakes of the decider's ports, with the rules of their
// adapters: UpdateOrder applies a transition atomically; Pay's Close moves
// WAITING (or nothing) to CLOSED and answers SUCCESS when a payment won;
// Restore gives stock back once.

type fakeOrders struct {
	mu     sync.Mutex
	orders map[string]domain.Order
	reads  int // plain reads (Order), outside UpdateOrder
}

func (f *fakeOrders) Order(_ context.Context, id string) (domain.Order, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	o, ok := f.orders[id]
	if !ok {
		return domain.Order{}, fmt.Errorf("order %s: %w", id, domain.ErrNotFound)
	}
	return o, nil
}

func (f *fakeOrders) UpdateOrder(_ context.Context, id string, fn func(*domain.Order) domain.Change) (domain.Order, domain.Change, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.orders[id]
	if !ok {
		return domain.Order{}, 0, domain.ErrNotFound
	}
	c := fn(&o)
	if c == domain.Applied {
		f.orders[id] = o
	}
	return o, c, nil
}

type fakePay struct {
	mu       sync.Mutex
	status   domain.PayStatus // "" when Pay has no pay order
	down     bool
	closes   int
	queries  int
	queryErr error
}

func (p *fakePay) Query(context.Context, string) (domain.PayOrder, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.queries++
	if p.down {
		return domain.PayOrder{}, fmt.Errorf("%w: Pay unreachable", domain.ErrUnavailable)
	}
	if p.status == "" {
		return domain.PayOrder{}, domain.ErrNotFound
	}
	return domain.PayOrder{Status: p.status}, nil
}

func (p *fakePay) Close(context.Context, string) (domain.PayOrder, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return domain.PayOrder{}, fmt.Errorf("%w: Pay unreachable", domain.ErrUnavailable)
	}
	p.closes++
	if p.status != domain.PaySuccess {
		p.status = domain.PayClosed
	}
	return domain.PayOrder{Status: p.status}, nil
}

type fakeStock struct {
	mu       sync.Mutex
	restored int
	released int
}

func (s *fakeStock) Restore(context.Context, string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.restored > 0 {
		return false, nil
	}
	s.restored++
	return true, nil
}

func (s *fakeStock) Release(context.Context, string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.released++
	return true, nil
}

type fakeTimers struct {
	mu        sync.Mutex
	scheduled []time.Time
}

func (t *fakeTimers) ScheduleTimeout(_ context.Context, _ string, deadline time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.scheduled = append(t.scheduled, deadline)
	return nil
}

var (
	now      = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	deadline = now.Add(-time.Second)
)

type world struct {
	d      *Decider
	orders *fakeOrders
	pay    *fakePay
	stock  *fakeStock
	timers *fakeTimers
}

func newWorld(o *domain.Order, pay domain.PayStatus) world {
	w := world{orders: &fakeOrders{orders: map[string]domain.Order{}}, pay: &fakePay{status: pay}, stock: &fakeStock{}, timers: &fakeTimers{}}
	if o != nil {
		w.orders.orders[o.ID] = *o
	}
	w.d = &Decider{Orders: w.orders, Pay: w.pay, Stock: w.stock, Timers: w.timers, Now: func() time.Time { return now }, SagaBudget: time.Minute}
	return w
}

func unpaid(dl time.Time) *domain.Order {
	return &domain.Order{ID: "o1", UserID: "u", Status: domain.OrderUnpaid, Deadline: dl, CreatedAt: dl.Add(-time.Minute),
		Items: []domain.OrderLine{{ItemID: "i", Quantity: 1, PriceCents: 100}}, TotalCents: 100}
}

// The work each decision asks for, held here since each read and call is
// billed: at the deadline one read of the order and one close of the pay
// order (no query before it: the close answers whether a payment won); a
// shopper's cancel reads nothing more than the order it is given; an
// announcement one query and no plain read.
func TestDecisionsAskNoMoreThanTheyNeed(t *testing.T) {
	dl := now.Add(-time.Second)
	for _, pay := range []domain.PayStatus{"", domain.PaySuccess} {
		w := newWorld(unpaid(dl), pay)
		if _, err := w.d.Due(context.Background(), "o1", dl); err != nil {
			t.Fatal(err)
		}
		if w.orders.reads != 1 || w.pay.queries != 0 || w.pay.closes != 1 {
			t.Errorf("deadline with pay order %q: %d reads, %d queries, %d closes; want 1, 0, 1", pay, w.orders.reads, w.pay.queries, w.pay.closes)
		}
	}
	w := newWorld(unpaid(now.Add(time.Minute)), "")
	o, out, err := w.d.Cancel(context.Background(), *unpaid(now.Add(time.Minute)), domain.CancelUserCancelled)
	if err != nil || out != Cancelled || o.Status != domain.OrderCancelled || w.orders.reads != 0 {
		t.Errorf("shopper cancel: %q %v, order %s, %d plain reads; want CANCELLED as stored and no read", out, err, o.Status, w.orders.reads)
	}
	w = newWorld(unpaid(now.Add(time.Minute)), domain.PaySuccess)
	if out, err := w.d.Check(context.Background(), "o1"); out != Paid || err != nil || w.orders.reads != 0 || w.pay.queries != 1 {
		t.Errorf("announcement: %q %v, %d plain reads, %d queries; want PAID, 0, 1", out, err, w.orders.reads, w.pay.queries)
	}
}

// Every branch of the decision at the deadline, in milliseconds.
func TestDue(t *testing.T) {
	paid := unpaid(deadline)
	paid.Status, paid.PaidAt = domain.OrderPaid, deadline
	cancelled := unpaid(deadline)
	cancelled.Status, cancelled.CancelReason = domain.OrderCancelled, domain.CancelUserCancelled
	for _, c := range []struct {
		name        string
		order       *domain.Order
		pay         domain.PayStatus
		payDown     bool
		event       time.Time
		want        Outcome
		wantErr     error
		status      domain.OrderStatus
		restored    int
		rescheduled bool
	}{
		{"unpaid, no payment: cancelled, stock back", unpaid(deadline), "", false, deadline, Cancelled, nil, domain.OrderCancelled, 1, false},
		{"unpaid, pay order waiting: cancelled", unpaid(deadline), domain.PayWaiting, false, deadline, Cancelled, nil, domain.OrderCancelled, 1, false},
		{"paid but unannounced: PAID, nothing restored", unpaid(deadline), domain.PaySuccess, false, deadline, Paid, nil, domain.OrderPaid, 0, false},
		{"Pay unknown: retry, never cancel on a guess", unpaid(deadline), "", true, deadline, "", ErrRetryLater, domain.OrderUnpaid, 0, false},
		{"deadline moved later: re-scheduled only", unpaid(now.Add(time.Hour)), "", false, deadline, Rescheduled, nil, domain.OrderUnpaid, 0, true},
		{"event early: re-scheduled only", unpaid(now.Add(time.Minute)), "", false, now.Add(time.Minute), Rescheduled, nil, domain.OrderUnpaid, 0, true},
		{"already paid: nothing", paid, domain.PaySuccess, false, deadline, NothingToDo, nil, domain.OrderPaid, 0, false},
		{"already cancelled: nothing", cancelled, domain.PayClosed, false, deadline, NothingToDo, nil, domain.OrderCancelled, 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(c.order, c.pay)
			w.pay.down = c.payDown
			out, err := w.d.Due(context.Background(), "o1", c.event)
			if out != c.want || !errors.Is(err, c.wantErr) || (c.wantErr == nil) != (err == nil) {
				t.Fatalf("Due = %q, %v; want %q, %v", out, err, c.want, c.wantErr)
			}
			o, _ := w.orders.Order(context.Background(), "o1")
			if o.Status != c.status || w.stock.restored != c.restored || (len(w.timers.scheduled) > 0) != c.rescheduled {
				t.Fatalf("after: %s, restored %d, scheduled %v", o.Status, w.stock.restored, w.timers.scheduled)
			}
			if c.status == domain.OrderCancelled && c.order.Status == domain.OrderUnpaid && o.CancelReason != domain.CancelPaymentTimeout {
				t.Fatalf("cancel reason %q", o.CancelReason)
			}
		})
	}
}

// A timer whose order does not exist: retried while its create may still
// write it, then its reservation is released.
func TestDueOrphan(t *testing.T) {
	w := newWorld(nil, "")
	if _, err := w.d.Due(context.Background(), "o1", now.Add(-30*time.Second)); !errors.Is(err, ErrRetryLater) || w.stock.released != 0 {
		t.Fatalf("within the saga budget: %v, released %d", err, w.stock.released)
	}
	if out, err := w.d.Due(context.Background(), "o1", now.Add(-2*time.Minute)); out != Orphan || err != nil || w.stock.released != 1 {
		t.Fatalf("past it: %q %v, released %d", out, err, w.stock.released)
	}
}

// A shopper's cancel, the deadline and a payment racing: exactly one
// outcome, the stock back at most once, never a cancel after a payment.
func TestCancelRaces(t *testing.T) {
	for _, c := range []struct {
		name   string
		pay    domain.PayStatus
		want   domain.OrderStatus
		reason string
	}{
		{"no payment: one cancel wins", "", domain.OrderCancelled, ""},
		{"payment won: PAID", domain.PaySuccess, domain.OrderPaid, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(unpaid(deadline), c.pay)
			var wg sync.WaitGroup
			for i := range 20 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if i%2 == 0 {
						_, _, _ = w.d.Cancel(context.Background(), *unpaid(deadline), domain.CancelUserCancelled)
					} else {
						_, _ = w.d.Due(context.Background(), "o1", deadline)
					}
				}()
			}
			wg.Wait()
			o, _ := w.orders.Order(context.Background(), "o1")
			if o.Status != c.want || w.stock.restored > 1 || (c.want == domain.OrderPaid && w.stock.restored != 0) {
				t.Fatalf("status %s, restored %d", o.Status, w.stock.restored)
			}
			if c.want == domain.OrderCancelled && o.CancelReason != domain.CancelUserCancelled && o.CancelReason != domain.CancelPaymentTimeout {
				t.Fatalf("reason %q", o.CancelReason)
			}
		})
	}
}

// The deadline reminder: once per deadline, only while UNPAID with that
// deadline, nothing for an order that does not exist.
func TestRemind(t *testing.T) {
	dl := now.Add(5 * time.Minute)
	w := newWorld(unpaid(dl), "")
	for i, want := range []Outcome{Reminded, NothingToDo} {
		if out, err := w.d.Remind(context.Background(), "o1", dl); out != want || err != nil {
			t.Fatalf("remind %d: %q %v, want %q", i, out, err, want)
		}
	}
	if out, _ := w.d.Remind(context.Background(), "o1", dl.Add(-time.Minute)); out != NothingToDo {
		t.Fatalf("a moved deadline's reminder: %q", out)
	}
	later := unpaid(dl.Add(time.Hour))
	w2 := newWorld(later, "")
	if _, _, err := w2.d.Cancel(context.Background(), *later, domain.CancelUserCancelled); err != nil {
		t.Fatal(err)
	}
	if out, err := w2.d.Remind(context.Background(), "o1", later.Deadline); out != NothingToDo || err != nil {
		t.Fatalf("reminder of a cancelled order: %q %v", out, err)
	}
	if out, err := newWorld(nil, "").d.Remind(context.Background(), "o1", dl); out != NothingToDo || err != nil {
		t.Fatalf("reminder without an order: %q %v", out, err)
	}
}
