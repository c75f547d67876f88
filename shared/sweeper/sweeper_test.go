package sweeper

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ordertimeout/ordertimeout/shared/domain"
	"github.com/ordertimeout/ordertimeout/shared/orderevents"
	"github.com/ordertimeout/ordertimeout/shared/timeout"
)

// In-memory fakes of the sweeper's ports: the queries return what is still
// overdue or orphaned (deciding removes it, as in Firestore), page by page.

var now = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

type world struct {
	mu       sync.Mutex
	orders   map[string]domain.Order
	orphans  map[string]domain.Reservation
	payDown  bool
	restored map[string]int
	released map[string]int
}

func (w *world) OverdueOrders(_ context.Context, before time.Time, limit int) ([]domain.Order, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []domain.Order
	for _, o := range w.orders {
		if o.Status == domain.OrderUnpaid && o.Deadline.Before(before) && len(out) < limit {
			out = append(out, o)
		}
	}
	return out, nil
}

func (w *world) StaleReservations(_ context.Context, before time.Time, limit int) ([]domain.Reservation, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []domain.Reservation
	for _, r := range w.orphans {
		if r.CreatedAt.Before(before) && len(out) < limit {
			out = append(out, r)
		}
	}
	return out, nil
}

func (w *world) Order(_ context.Context, id string) (domain.Order, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	o, ok := w.orders[id]
	if !ok {
		return domain.Order{}, domain.ErrNotFound
	}
	return o, nil
}

func (w *world) UpdateOrder(_ context.Context, id string, fn func(*domain.Order) domain.Change) (domain.Order, domain.Change, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	o := w.orders[id]
	c := fn(&o)
	if c == domain.Applied {
		w.orders[id] = o
	}
	return o, c, nil
}

func (w *world) Query(context.Context, string) (domain.PayOrder, error) {
	if w.payDown {
		return domain.PayOrder{}, fmt.Errorf("%w: Pay down", domain.ErrUnavailable)
	}
	return domain.PayOrder{}, domain.ErrNotFound
}

func (w *world) Close(context.Context, string) (domain.PayOrder, error) {
	if w.payDown {
		return domain.PayOrder{}, fmt.Errorf("%w: Pay down", domain.ErrUnavailable)
	}
	return domain.PayOrder{Status: domain.PayClosed}, nil
}

func (w *world) Restore(_ context.Context, id string) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.restored[id]++
	return w.restored[id] == 1, nil
}

func (w *world) Release(_ context.Context, id string) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.released[id]++
	delete(w.orphans, id) // given back: no longer RESERVED
	return true, nil
}

func (w *world) ScheduleTimeout(context.Context, string, time.Time) error { return nil }

type events struct{ calls int }

func (e *events) Redeliver(context.Context, time.Duration, int) (orderevents.Report, error) {
	e.calls++
	return orderevents.Report{Delivered: 2, Oldest: 30 * time.Second}, nil
}

func newSweeper(w *world, ev *events) *Sweeper {
	d := &timeout.Decider{Orders: w, Pay: w, Stock: w, Timers: w, Now: func() time.Time { return now }, SagaBudget: time.Minute}
	s := &Sweeper{Find: w, Decider: d, Grace: time.Minute, SagaBudget: time.Minute, PageSize: 2, MaxPages: 10, Now: func() time.Time { return now }}
	if ev != nil {
		s.Events = ev
	}
	return s
}

func newWorld() *world {
	w := &world{orders: map[string]domain.Order{}, orphans: map[string]domain.Reservation{}, restored: map[string]int{}, released: map[string]int{}}
	for i := range 5 { // overdue: past deadline + grace
		id := fmt.Sprintf("late%d", i)
		w.orders[id] = domain.Order{ID: id, Status: domain.OrderUnpaid, Deadline: now.Add(-2 * time.Minute)}
	}
	w.orders["fresh"] = domain.Order{ID: "fresh", Status: domain.OrderUnpaid, Deadline: now.Add(-30 * time.Second)} // within grace
	for i := range 3 {                                                                                              // orphaned reservations, past the saga budget after their deadline
		id := fmt.Sprintf("orphan%d", i)
		w.orphans[id] = domain.Reservation{OrderID: id, State: domain.Reserved, CreatedAt: now.Add(-20 * time.Minute)}
	}
	return w
}

// One run decides every overdue order (over several pages), releases
// every orphan, leaves what is within its grace, and delivers the events
// left in the outbox.
func TestSweepDecidesWhatTheTimersMissed(t *testing.T) {
	w, ev := newWorld(), &events{}
	rep, err := newSweeper(w, ev).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.OverdueFound != 5 || rep.Decided[string(timeout.Cancelled)] != 5 || rep.OrphansFound != 3 || rep.Decided[string(timeout.Orphan)] != 3 || rep.Deferred != 0 {
		t.Fatalf("report %+v", rep)
	}
	if w.orders["fresh"].Status != domain.OrderUnpaid || w.restored["fresh"] != 0 {
		t.Fatal("an order within its grace was decided")
	}
	for i := range 5 {
		if id := fmt.Sprintf("late%d", i); w.orders[id].Status != domain.OrderCancelled || w.restored[id] != 1 {
			t.Fatalf("%s: %+v, restored %d", id, w.orders[id], w.restored[id])
		}
	}
	if ev.calls != 1 || rep.EventsDelivered != 2 {
		t.Fatalf("events: %d calls, %d delivered", ev.calls, rep.EventsDelivered)
	}
	// A second run finds nothing more: every step was idempotent and done.
	if rep, err := newSweeper(w, nil).Run(context.Background()); err != nil || rep.OverdueFound+rep.OrphansFound != 0 {
		t.Fatalf("second run: %+v %v", rep, err)
	}
}

// With Pay down nothing is cancelled on a guess: every overdue order is
// deferred to the next run, and the run ends (a page without progress
// stops it) instead of looping.
func TestSweepDefersWhenPayIsDown(t *testing.T) {
	w := newWorld()
	w.payDown = true
	rep, err := newSweeper(w, nil).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Deferred == 0 || rep.Decided[string(timeout.Cancelled)] != 0 {
		t.Fatalf("report %+v", rep)
	}
	for id, o := range w.orders {
		if o.Status != domain.OrderUnpaid {
			t.Fatalf("%s decided while Pay was down", id)
		}
	}
}
