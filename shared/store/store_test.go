package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ordertimeout/ordertimeout/local/testenv"
	"github.com/ordertimeout/ordertimeout/shared/domain"
	"github.com/ordertimeout/ordertimeout/shared/store"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func mustItem(t *testing.T, s *store.Store, id string) domain.Item {
	t.Helper()
	it, err := s.Item(ctxT(t), id)
	if err != nil {
		t.Fatalf("item %s: %v", id, err)
	}
	return it
}

func TestReserveAllOrNothingAndIdempotent(t *testing.T) {
	t.Parallel()
	s, _ := testenv.Store(t)
	ctx := ctxT(t)
	for _, it := range []domain.Item{{ID: "a", Name: "A", PriceCents: 250, Stock: 3}, {ID: "b", Name: "B", PriceCents: 99, Stock: 1}} {
		if err := s.PutItem(ctx, it); err != nil {
			t.Fatal(err)
		}
	}
	// One line short: nothing is taken.
	if _, err := s.Reserve(ctx, "o1", []domain.Want{{ItemID: "a", Quantity: 2}, {ItemID: "b", Quantity: 2}}); !errors.Is(err, domain.ErrInsufficientStock) {
		t.Fatalf("short reserve: %v", err)
	}
	if _, err := s.Reserve(ctx, "o1", []domain.Want{{ItemID: "a", Quantity: 1}, {ItemID: "nope", Quantity: 1}}); !errors.Is(err, domain.ErrUnknownItem) {
		t.Fatalf("unknown reserve: %v", err)
	}
	if a, b := mustItem(t, s, "a").Stock, mustItem(t, s, "b").Stock; a != 3 || b != 1 {
		t.Fatalf("after failed reserves stock a=%d b=%d", a, b)
	}
	lines, err := s.Reserve(ctx, "o2", []domain.Want{{ItemID: "a", Quantity: 2}, {ItemID: "b", Quantity: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if lines[0].PriceCents != 250 || lines[1].PriceCents != 99 {
		t.Fatalf("lines not priced from catalog: %+v", lines)
	}
	// Same order again: same lines, nothing more taken.
	again, err := s.Reserve(ctx, "o2", []domain.Want{{ItemID: "a", Quantity: 2}, {ItemID: "b", Quantity: 1}})
	if err != nil || len(again) != 2 {
		t.Fatalf("repeat reserve: %v %+v", err, again)
	}
	if a, b := mustItem(t, s, "a").Stock, mustItem(t, s, "b").Stock; a != 1 || b != 0 {
		t.Fatalf("after reserve stock a=%d b=%d", a, b)
	}
	for i, want := range []domain.Change{domain.Applied, domain.NoOp, domain.NoOp} {
		got, err := s.Restore(ctx, "o2", false)
		if err != nil || got != want {
			t.Fatalf("restore #%d: %v %v, want %v", i, got, err, want)
		}
	}
	if a, b := mustItem(t, s, "a").Stock, mustItem(t, s, "b").Stock; a != 3 || b != 1 {
		t.Fatalf("after restore stock a=%d b=%d", a, b)
	}
	// A restore that overtakes its deduct blocks the deduct.
	if _, err := s.Restore(ctx, "o3", false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reserve(ctx, "o3", []domain.Want{{ItemID: "a", Quantity: 1}}); !errors.Is(err, domain.ErrOrderClosed) {
		t.Fatalf("reserve after restore: %v", err)
	}
	if a := mustItem(t, s, "a").Stock; a != 3 {
		t.Fatalf("stock a=%d", a)
	}
}

// 60 concurrent orders of 2 units each on an item with 50 in stock, spread
// over 3 clients (as 3 function instances: they contend through Firestore's
// transactions, not only the in-process locks): exactly 25 succeed, the
// rest get ErrInsufficientStock, and stock + Σ reserved = 50.
func TestConcurrentReserveNoOversell(t *testing.T) {
	t.Parallel()
	s, project := testenv.Store(t)
	instances := []*store.Store{s, testenv.StoreOn(t, project), testenv.StoreOn(t, project)}
	ctx := ctxT(t)
	const initial, orders, each = 50, 60, 2
	if err := s.PutItem(ctx, domain.Item{ID: "hot", Name: "Hot", PriceCents: 1, Stock: initial}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, orders)
	for i := range orders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = instances[i%len(instances)].Reserve(ctx, fmt.Sprintf("o%d", i), []domain.Want{{ItemID: "hot", Quantity: each}})
		}()
	}
	wg.Wait()
	ok, short := 0, 0
	var reserved int64
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
			r, rerr := s.Reservation(ctx, fmt.Sprintf("o%d", i))
			if rerr != nil {
				t.Fatal(rerr)
			}
			reserved += r.Lines[0].Quantity
		case errors.Is(err, domain.ErrInsufficientStock):
			short++
		default:
			t.Errorf("order %d: unexpected error %v", i, err)
		}
	}
	stock := mustItem(t, s, "hot").Stock
	if stock < 0 || stock+reserved != initial {
		t.Fatalf("stock %d + reserved %d != %d", stock, reserved, initial)
	}
	if ok != initial/each || short != orders-initial/each {
		t.Fatalf("ok=%d short=%d", ok, short)
	}
}

// reserve puts a plentiful item x and reserves one for order id, as the
// create saga does before it writes the order.
func reserve(t *testing.T, s *store.Store, id string) {
	t.Helper()
	if _, err := s.Item(ctxT(t), "x"); err != nil {
		if err := s.PutItem(ctxT(t), domain.Item{ID: "x", Name: "X", PriceCents: 1, Stock: 1_000_000}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Reserve(ctxT(t), id, []domain.Want{{ItemID: "x", Quantity: 1}}); err != nil {
		t.Fatal(err)
	}
}

func seedOrder(t *testing.T, s *store.Store, id, user string, total int64) {
	t.Helper()
	reserve(t, s, id)
	o, _ := domain.NewOrder(id, user, []domain.OrderLine{{ItemID: "x", Quantity: 1, PriceCents: total}}, time.Now(), time.Now().Add(time.Minute))
	if _, created, err := s.CreateOrder(ctxT(t), o); err != nil || !created {
		t.Fatalf("create order %s: %v %v", id, created, err)
	}
}

// 50 races of Pay against ClosePayOrder, each side on its own client (as
// Pay and HandleTimeout instances): exactly one wins each, and the wallet is
// debited exactly for the SUCCESS ones.
func TestPayVersusCloseRaces(t *testing.T) {
	t.Parallel()
	s, project := testenv.Store(t)
	closer := testenv.StoreOn(t, project)
	ctx := ctxT(t)
	const n, price, balance = 50, 100, 1_000_000
	if err := s.PutWallet(ctx, domain.Wallet{UserID: "u", BalanceCents: balance}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		seedOrder(t, s, fmt.Sprintf("o%d", i), "u", price)
	}
	type result struct {
		payErr      error
		paid        bool
		closeChange domain.Change
		closeErr    error
	}
	res := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		id := fmt.Sprintf("o%d", i)
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, res[i].paid, res[i].payErr = s.Pay(ctx, id, "u", "p-"+id)
		}()
		go func() {
			defer wg.Done()
			_, res[i].closeChange, res[i].closeErr = closer.ClosePayOrder(ctx, id, "c-"+id)
		}()
	}
	wg.Wait()
	successes := 0
	for i, r := range res {
		if r.closeErr != nil {
			t.Fatalf("close %d: %v", i, r.closeErr)
		}
		payWon := r.payErr == nil && r.paid
		closeWon := r.closeChange == domain.Applied
		if payWon == closeWon {
			t.Fatalf("race %d: pay won=%v (%v), close won=%v", i, payWon, r.payErr, closeWon)
		}
		if !payWon && !errors.Is(r.payErr, domain.ErrOrderClosed) {
			t.Fatalf("race %d: losing pay error %v", i, r.payErr)
		}
		p, err := s.PayOrder(ctx, fmt.Sprintf("o%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if payWon != (p.Status == domain.PaySuccess) {
			t.Fatalf("race %d: pay won=%v but stored %s", i, payWon, p.Status)
		}
		if payWon {
			successes++
		}
	}
	w, err := s.Wallet(ctx, "u")
	if err != nil {
		t.Fatal(err)
	}
	if w.BalanceCents != balance-int64(successes)*price {
		t.Fatalf("balance %d with %d successes", w.BalanceCents, successes)
	}
	t.Logf("%d of %d races won by Pay", successes, n)
}

func TestPayRules(t *testing.T) {
	t.Parallel()
	s, _ := testenv.Store(t)
	ctx := ctxT(t)
	seedOrder(t, s, "o1", "u", 500)
	if err := s.PutWallet(ctx, domain.Wallet{UserID: "u", BalanceCents: 400}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Pay(ctx, "o1", "someone-else", "p1"); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("other user: %v", err)
	}
	if _, _, err := s.Pay(ctx, "o1", "u", "p1"); !errors.Is(err, domain.ErrInsufficientBalance) {
		t.Fatalf("poor: %v", err)
	}
	if _, err := s.PayOrder(ctx, "o1"); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("a refused payment left a pay order: %v", err)
	}
	if err := s.PutWallet(ctx, domain.Wallet{UserID: "u", BalanceCents: 1200}); err != nil {
		t.Fatal(err)
	}
	p1, changed, err := s.Pay(ctx, "o1", "u", "p1")
	if err != nil || !changed || p1.Status != domain.PaySuccess || p1.AmountCents != 500 {
		t.Fatalf("pay: %+v %v %v", p1, changed, err)
	}
	p2, changed, err := s.Pay(ctx, "o1", "u", "p2")
	if err != nil || changed || p2.ID != p1.ID {
		t.Fatalf("pay again: %+v %v %v", p2, changed, err)
	}
	if w, _ := s.Wallet(ctx, "u"); w.BalanceCents != 700 {
		t.Fatalf("balance %d", w.BalanceCents)
	}
	if _, c, err := s.ClosePayOrder(ctx, "o1", "c1"); err != nil || c != domain.Refused {
		t.Fatalf("close after pay: %v %v", c, err)
	}
	// A cancelled order refuses payment.
	seedOrder(t, s, "o2", "u", 100)
	if _, _, err := s.UpdateOrder(ctx, "o2", func(o *domain.Order) domain.Change { return o.Cancel(time.Now(), domain.CancelPaymentTimeout) }); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Pay(ctx, "o2", "u", "p3"); !errors.Is(err, domain.ErrOrderClosed) {
		t.Fatalf("pay cancelled: %v", err)
	}
}

func TestCreateOrderConverges(t *testing.T) {
	t.Parallel()
	s, _ := testenv.Store(t)
	ctx := ctxT(t)
	reserve(t, s, "same")
	var wg sync.WaitGroup
	created := make([]bool, 10)
	for i := range created {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o, _ := domain.NewOrder("same", "u", []domain.OrderLine{{ItemID: "x", Quantity: 1, PriceCents: int64(i)}}, time.Now(), time.Now())
			var err error
			if _, created[i], err = s.CreateOrder(ctx, o); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	n := 0
	for _, c := range created {
		if c {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d creators, want 1", n)
	}
}

func TestOrderNeedsLiveReservation(t *testing.T) {
	t.Parallel()
	s, _ := testenv.Store(t)
	ctx := ctxT(t)
	o, _ := domain.NewOrder("o1", "u", []domain.OrderLine{{ItemID: "x", Quantity: 1, PriceCents: 1}}, time.Now(), time.Now())
	if _, _, err := s.CreateOrder(ctx, o); !errors.Is(err, domain.ErrOrderClosed) {
		t.Fatalf("order without reservation: %v", err)
	}
	reserve(t, s, "o1")
	if _, err := s.Restore(ctx, "o1", true); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateOrder(ctx, o); !errors.Is(err, domain.ErrOrderClosed) {
		t.Fatalf("order after its stock was released: %v", err)
	}
	// A release never takes the stock of a live order.
	reserve(t, s, "o2")
	o.ID = "o2"
	if _, _, err := s.CreateOrder(ctx, o); err != nil {
		t.Fatal(err)
	}
	if c, err := s.Restore(ctx, "o2", true); err != nil || c != domain.Refused {
		t.Fatalf("release of a live order: %v %v", c, err)
	}
	if r, _ := s.Reservation(ctx, "o2"); r.State != domain.Ordered {
		t.Fatalf("reservation %s", r.State)
	}
}

func TestCartUpdate(t *testing.T) {
	t.Parallel()
	s, _ := testenv.Store(t)
	ctx := ctxT(t)
	if err := s.PutCart(ctx, domain.Cart{UserID: "u", Lines: []domain.CartLine{{ItemID: "a", Quantity: 1}, {ItemID: "b", Quantity: 2}}}); err != nil {
		t.Fatal(err)
	}
	c, err := s.UpdateCart(ctx, "u", func(c *domain.Cart) (bool, error) { return c.Remove([]string{"a"}), nil })
	if err != nil || len(c.Lines) != 1 || c.Lines[0].ItemID != "b" {
		t.Fatalf("cart %+v %v", c, err)
	}
	got, err := s.Cart(ctx, "u")
	if err != nil || len(got.Lines) != 1 {
		t.Fatalf("stored cart %+v %v", got, err)
	}
	empty, err := s.Cart(ctx, "nobody")
	if err != nil || len(empty.Lines) != 0 {
		t.Fatalf("empty cart %+v %v", empty, err)
	}
}

// A caller waiting for a key that another transaction of this process
// holds gives up when its context ends, with nothing taken; the key is
// usable again once released.
func TestWaitForKeyEndsWithContext(t *testing.T) {
	t.Parallel()
	s, _ := testenv.Store(t)
	ctx := ctxT(t)
	if err := s.PutItem(ctx, domain.Item{ID: "x", Name: "X", PriceCents: 1, Stock: 5}); err != nil {
		t.Fatal(err)
	}
	release := s.HoldKeys("item/x")
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.Reserve(short, "o1", []domain.Want{{ItemID: "x", Quantity: 1}})
	if !errors.Is(err, domain.ErrUnavailable) || time.Since(start) > 2*time.Second {
		t.Fatalf("reserve behind a held key: %v after %v, want ErrUnavailable when its context ends", err, time.Since(start))
	}
	payCtx, cancel2 := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel2()
	releasePay := s.HoldKeys("pay/o9")
	if _, _, err := s.ClosePayOrder(payCtx, "o9", "p9"); !errors.Is(err, domain.ErrUnavailable) {
		t.Fatalf("close behind a held key: %v", err)
	}
	releasePay()
	release()
	if got := mustItem(t, s, "x").Stock; got != 5 {
		t.Fatalf("stock %d after the abandoned reserve, want 5", got)
	}
	if _, err := s.Reserve(ctx, "o1", []domain.Want{{ItemID: "x", Quantity: 1}}); err != nil {
		t.Fatalf("reserve after release: %v", err)
	}
}
