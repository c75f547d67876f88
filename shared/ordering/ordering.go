// Package ordering is the shopper's side of an order's life: create it (a
// saga with compensation), read and list them, move a deadline later, and
// cancel. It speaks the domain; CreateOrder decodes HTTP, calls it and
// encodes the answer.
//
// Create:
//
//  1. claim the Idempotency-Key (one create per key per user at a time);
//  2. claim the shopper's allowance: the cap on unpaid orders and the
//     items' purchase limits (refused: nothing reserved);
//  3. reserve stock through DeductStock (all or nothing; prices from the
//     catalog; a total beyond int64 cents is refused there, taking nothing);
//  4. schedule the payment timeout on the broker, confirmed;
//  5. write the order UNPAID (only while its reservation is live);
//  6. clear the purchased items from the cart (best effort, retried; a
//     failure is logged for repair and does not fail the order).
//
// A failure in 4 or 5 gives the reservation back and fails the create, so
// no order exists without its stock and its timer; a failure anywhere
// after 2 gives the allowance back. A write reported as failed that did
// commit is found and answered as the order it made. Cancel goes through the
// same close as the deadline (timeout.Decider), so one owner decides every
// order's end.
package ordering

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/ordertimeout/ordertimeout/shared/domain"
	"github.com/ordertimeout/ordertimeout/shared/logging"
	"github.com/ordertimeout/ordertimeout/shared/telemetry"
	"github.com/ordertimeout/ordertimeout/shared/timeout"
)

// Orders is what the service needs of the order store.
type Orders interface {
	CreateOrder(ctx context.Context, o domain.Order) (domain.Order, bool, error)
	Order(ctx context.Context, id string) (domain.Order, error)
	UpdateOrder(ctx context.Context, id string, fn func(*domain.Order) domain.Change) (domain.Order, domain.Change, error)
	// ListOrders: up to limit of userID's orders (in status unless empty),
	// newest first, after the order `after` (nil: from the newest).
	ListOrders(ctx context.Context, userID string, status domain.OrderStatus, limit int, after *domain.Order) ([]domain.Order, error)
}

// Keys holds Idempotency-Key leases.
type Keys interface {
	ClaimKey(ctx context.Context, userID, key, requestHash, newOrderID string, until time.Time) (domain.Lease, error)
	SettleKey(ctx context.Context, userID, key, orderID string, state domain.LeaseState) error
}

// Stock is what the saga needs of DeductStock.
type Stock interface {
	Reserve(ctx context.Context, orderID string, wants []domain.Want) ([]domain.OrderLine, error)
	Release(ctx context.Context, orderID string) (bool, error)
}

// Cart is what the saga needs of ClearCart.
type Cart interface {
	Clear(ctx context.Context, userID string, itemIDs []string) error
}

// Allowances holds shoppers' purchase allowances (store.Store).
type Allowances interface {
	// Limits returns the maxPerShopper of each limited item of ids.
	Limits(ctx context.Context, ids []string) (map[string]int64, error)
	ClaimAllowance(ctx context.Context, userID, orderID string, wants []domain.Want, limits map[string]int64, maxUnpaid int, sagaBudget time.Duration) error
	ReleaseAllowance(ctx context.Context, userID, orderID string) error
}

// Timers schedules an order's timers (events.Timers on the broker).
type Timers interface {
	ScheduleTimeout(ctx context.Context, orderID string, deadline time.Time) error
	ScheduleCheck(ctx context.Context, orderID string, deadline, at time.Time) error
	ScheduleReminder(ctx context.Context, orderID string, deadline, at time.Time) error
}

// Closer ends an UNPAID order (timeout.Decider).
type Closer interface {
	// Cancel closes o, read UNPAID, and returns it as stored after.
	Cancel(ctx context.Context, o domain.Order, reason string) (domain.Order, timeout.Outcome, error)
}

// Settings are the service's configuration.
type Settings struct {
	TimeoutDefault, TimeoutMin, TimeoutMax time.Duration
	// CheckLadder are offsets after creation of early payment checks.
	CheckLadder []time.Duration
	// SagaBudget is how long a create may take (its key's lease).
	SagaBudget time.Duration
	// CallTimeout bounds one call to a peer (compensation, duplicate waits).
	CallTimeout time.Duration
	// MaxUnpaid caps a shopper's UNPAID orders (0: no cap).
	MaxUnpaid int
	// RemindBefore schedules a deadline-approaching reminder this long
	// before each deadline (0: none).
	RemindBefore time.Duration
}

// Service runs the operations.
type Service struct {
	// Metrics records created and refused orders (nil: nowhere).
	Metrics *telemetry.Instruments
	Orders  Orders
	Keys    Keys
	Stock   Stock
	Cart    Cart
	Timers  Timers
	Closer  Closer
	// Allowances enforces the shopper limits (nil: none).
	Allowances Allowances
	Settings   Settings
	Now        func() time.Time
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

// CreateRequest is a validated create.
type CreateRequest struct {
	UserID         string
	Wants          []domain.Want
	Timeout        time.Duration
	IdempotencyKey string
}

// MaxIdempotencyKey is the longest Idempotency-Key accepted.
const MaxIdempotencyKey = 255

// NewCreate validates a create of wants already checked by
// domain.CheckWants: the payment timeout in seconds (nil: the default)
// against the configured range, and the key. Every failure is a
// *domain.InvalidError.
func (s *Service) NewCreate(userID string, wants []domain.Want, timeoutSeconds *int64, key string) (CreateRequest, error) {
	d := s.Settings.TimeoutDefault
	if timeoutSeconds != nil {
		lo, hi := int64(s.Settings.TimeoutMin/time.Second), int64(s.Settings.TimeoutMax/time.Second)
		if *timeoutSeconds < lo || *timeoutSeconds > hi {
			return CreateRequest{}, domain.Invalidf("paymentTimeoutSeconds must be between %d and %d", lo, hi)
		}
		d = time.Duration(*timeoutSeconds) * time.Second
	}
	if len(key) > MaxIdempotencyKey {
		return CreateRequest{}, domain.Invalidf("Idempotency-Key longer than %d characters", MaxIdempotencyKey)
	}
	return CreateRequest{UserID: userID, Wants: wants, Timeout: d, IdempotencyKey: key}, nil
}

// Create runs the saga. created is false when an Idempotency-Key returned
// an order an earlier create made.
func (s *Service) Create(ctx context.Context, req CreateRequest) (o domain.Order, created bool, err error) {
	orderID := newOrderID()
	if key := req.IdempotencyKey; key != "" {
		// err is the named result throughout: the deferred settle below
		// must see how the saga ended.
		var lease domain.Lease
		if lease, err = s.Keys.ClaimKey(ctx, req.UserID, key, requestHash(req.Wants, req.Timeout), orderID, s.now().Add(s.Settings.SagaBudget)); err != nil {
			return domain.Order{}, false, err
		}
		if !lease.Owned {
			o, err = s.existing(ctx, req.UserID, lease)
			return o, false, err
		}
		defer func() {
			state := domain.LeaseDone
			if err != nil && !errors.Is(err, errMayExist) {
				state = domain.LeaseFailed
			}
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.Settings.CallTimeout)
			defer cancel()
			if serr := s.Keys.SettleKey(sctx, req.UserID, key, orderID, state); serr != nil {
				logging.From(ctx).Warn("idempotency lease not settled; it expires by itself", logging.KeyOrderID, orderID, "error", serr.Error())
			}
		}()
	}
	o, err = s.saga(ctx, req.UserID, orderID, req.Wants, req.Timeout)
	return o, err == nil, err
}

// existing answers a duplicate create with the order once it exists: the
// first create may still be running, so it waits for it a little, then
// fails with domain.ErrCreateInProgress.
func (s *Service) existing(ctx context.Context, userID string, lease domain.Lease) (domain.Order, error) {
	deadline := s.now().Add(2 * s.Settings.CallTimeout)
	if lease.State == domain.LeaseDone {
		deadline = s.now() // the order was written: one read finds it
	}
	for {
		o, err := s.Orders.Order(ctx, lease.OrderID)
		if err == nil && o.UserID == userID {
			return o, nil
		}
		if err != nil && !errors.Is(err, domain.ErrNotFound) {
			return domain.Order{}, err
		}
		if s.now().After(deadline) {
			return domain.Order{}, fmt.Errorf("order %s: %w", lease.OrderID, domain.ErrCreateInProgress)
		}
		select {
		case <-ctx.Done():
			return domain.Order{}, fmt.Errorf("%w: %w", domain.ErrUnavailable, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// errMayExist marks a create that failed while its order may have been
// written (the write's outcome is unknown): its key stays on the order,
// its allowance stays held, and the sweeper settles the rest.
var errMayExist = errors.New("the order may exist")

func (s *Service) saga(ctx context.Context, uid, orderID string, wants []domain.Want, payTimeout time.Duration) (domain.Order, error) {
	log := logging.From(ctx).With(logging.KeyOrderID, orderID, "user_id", uid)
	trace.SpanFromContext(ctx).SetAttributes(attribute.String(logging.KeyOrderID, orderID))
	held, err := s.claimAllowance(ctx, uid, orderID, wants)
	if err != nil {
		return domain.Order{}, err
	}
	o, err := s.reserveAndWrite(ctx, log, uid, orderID, wants, payTimeout)
	if err != nil {
		if held && !errors.Is(err, errMayExist) {
			s.releaseAllowance(ctx, log, uid, orderID)
		}
		return domain.Order{}, err
	}
	itemIDs := domain.ItemIDs(wants)
	if err := s.Cart.Clear(ctx, uid, itemIDs); err != nil {
		log.Error("cart not cleared after order; repair by clearing these items", "cart_clear_failed", true, "item_ids", itemIDs, "error", err.Error())
	}
	s.Metrics.Created(ctx)
	log.Info("order created", "deadline", o.Deadline, "total_cents", o.TotalCents)
	return o, nil
}

// claimAllowance holds orderID's part of uid's allowance, when a limit
// applies to this create; held says whether one was claimed.
func (s *Service) claimAllowance(ctx context.Context, uid, orderID string, wants []domain.Want) (held bool, err error) {
	if s.Allowances == nil {
		return false, nil
	}
	limits, err := s.Allowances.Limits(ctx, domain.ItemIDs(wants))
	if err != nil {
		return false, err
	}
	if !domain.NeedsAllowance(wants, limits, s.Settings.MaxUnpaid) {
		return false, nil
	}
	err = s.Allowances.ClaimAllowance(ctx, uid, orderID, wants, limits, s.Settings.MaxUnpaid, s.Settings.SagaBudget)
	for _, reason := range []struct {
		err  error
		code string
	}{{domain.ErrPurchaseLimit, "PURCHASE_LIMIT"}, {domain.ErrTooManyUnpaid, "TOO_MANY_UNPAID_ORDERS"}} {
		if errors.Is(err, reason.err) {
			s.Metrics.Refused(ctx, reason.code)
			logging.From(ctx).Info("create refused by a shopper limit", logging.KeyOrderID, orderID, "user_id", uid, "reason", reason.code)
		}
	}
	return err == nil, err
}

// releaseAllowance gives a failed create's allowance back; if that fails,
// the next claim of the shopper drops it once the saga budget has passed.
func (s *Service) releaseAllowance(ctx context.Context, log *slog.Logger, uid, orderID string) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.Settings.CallTimeout)
	defer cancel()
	if err := s.Allowances.ReleaseAllowance(cctx, uid, orderID); err != nil {
		log.Warn("allowance not given back; the shopper's next create drops it after the saga budget", "error", err.Error())
	}
}

// reserveAndWrite reserves the stock, schedules the timers and writes the
// order, giving the stock back if a later step fails.
func (s *Service) reserveAndWrite(ctx context.Context, log *slog.Logger, uid, orderID string, wants []domain.Want, payTimeout time.Duration) (domain.Order, error) {
	lines, err := s.Stock.Reserve(ctx, orderID, wants)
	if err != nil {
		return domain.Order{}, err
	}
	// Firestore keeps microseconds: the order, its timers and its events
	// carry the times a read gives back.
	now := s.now().Truncate(time.Microsecond)
	o, err := domain.NewOrder(orderID, uid, lines, now, now.Add(payTimeout))
	if err != nil {
		// DeductStock checks the totals before it takes anything; this only
		// guards a peer that did not.
		return domain.Order{}, s.compensate(ctx, log, orderID, err)
	}
	if err := s.scheduleTimers(ctx, orderID, o.Deadline); err != nil {
		return domain.Order{}, s.compensate(ctx, log, orderID, err)
	}
	for _, at := range CheckTimes(now, o.Deadline, s.Settings.CheckLadder) {
		if err := s.Timers.ScheduleCheck(ctx, orderID, o.Deadline, at); err != nil {
			log.Warn("early payment check not scheduled; the deadline check still runs", "at", at, "error", err.Error())
			break
		}
	}
	stored, _, err := s.Orders.CreateOrder(ctx, o)
	if err == nil {
		return stored, nil
	}
	cause := fmt.Errorf("%w: write order: %w", domain.ErrUnavailable, err)
	if s.release(ctx, log, orderID, cause) {
		return domain.Order{}, cause // given back: no order can be written any more
	}
	// Nothing was given back: an order may hold the stock, its commit gone
	// through although the caller saw an error (its deadline ended, it hung
	// up). If so, that order is the answer.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.Settings.CallTimeout)
	defer cancel()
	written, rerr := s.Orders.Order(cctx, orderID)
	switch {
	case rerr == nil:
		log.Warn("order write reported an error but had committed; answering the order", "error", err.Error())
		return written, nil
	case errors.Is(rerr, domain.ErrNotFound):
		return domain.Order{}, cause
	default:
		return domain.Order{}, fmt.Errorf("%w (%w)", cause, errMayExist)
	}
}

// scheduleTimers schedules the deadline's timer and, when reminders are
// on and there is time for one, its reminder; both confirmed.
func (s *Service) scheduleTimers(ctx context.Context, orderID string, deadline time.Time) error {
	if err := s.Timers.ScheduleTimeout(ctx, orderID, deadline); err != nil {
		return fmt.Errorf("%w: schedule timeout: %w", domain.ErrUnavailable, err)
	}
	if s.Settings.RemindBefore > 0 {
		if at := deadline.Add(-s.Settings.RemindBefore); at.After(s.now()) {
			if err := s.Timers.ScheduleReminder(ctx, orderID, deadline, at); err != nil {
				return fmt.Errorf("%w: schedule reminder: %w", domain.ErrUnavailable, err)
			}
		}
	}
	return nil
}

// compensate gives the reservation back after a later step failed and
// returns cause.
func (s *Service) compensate(ctx context.Context, log *slog.Logger, orderID string, cause error) error {
	s.release(ctx, log, orderID, cause)
	return cause
}

// release gives the reservation back unless an order with this id exists
// (checked in DeductStock's transaction), and reports whether it did. If
// even that fails, the orphan is released by the timer (or the sweeper)
// once the saga budget has passed; the order can never be written
// meanwhile.
func (s *Service) release(ctx context.Context, log *slog.Logger, orderID string, cause error) bool {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.Settings.CallTimeout)
	defer cancel()
	restored, err := s.Stock.Release(cctx, orderID)
	switch {
	case err != nil:
		log.Error("compensation failed: reservation left for the sweeper", "error", err.Error(), "cause", cause.Error())
	case restored:
		log.Warn("create failed: reservation given back", "cause", cause.Error())
	default:
		log.Warn("create failed: nothing given back (given back already, or an order holds it)", "cause", cause.Error())
	}
	return restored
}

// CheckTimes returns the early-check instants of an order created at now,
// from ladder offsets, keeping those before the deadline.
func CheckTimes(now, deadline time.Time, ladder []time.Duration) []time.Time {
	var out []time.Time
	for _, d := range ladder {
		if at := now.Add(d); at.Before(deadline) {
			out = append(out, at)
		}
	}
	return out
}

// requestHash identifies a request's content independent of line order.
func requestHash(wants []domain.Want, d time.Duration) string {
	sorted := append([]domain.Want(nil), wants...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].ItemID < sorted[j].ItemID })
	b, _ := json.Marshal(struct {
		W []domain.Want
		D int64
	}{sorted, int64(d / time.Second)})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

func newOrderID() string {
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	return "o" + hex.EncodeToString(b)
}

// Get returns userID's order id; another user's is domain.ErrNotFound.
func (s *Service) Get(ctx context.Context, userID, id string) (domain.Order, error) {
	o, err := s.Orders.Order(ctx, id)
	if err == nil && o.UserID != userID {
		err = fmt.Errorf("order %q belongs to another user: %w", id, domain.ErrNotFound)
	}
	return o, err
}

// Extend moves an UNPAID order's deadline later (for example while a
// payment is in progress). It schedules the new deadline's timer first
// (confirmed), then moves the deadline: the old timer then finds a later
// deadline and only re-schedules; if the move fails, the extra timer is a
// harmless no-op.
func (s *Service) Extend(ctx context.Context, id string, deadline time.Time) (domain.Order, error) {
	o, err := s.Orders.Order(ctx, id)
	if err != nil {
		return domain.Order{}, err
	}
	if deadline.Sub(o.CreatedAt) > s.Settings.TimeoutMax {
		return domain.Order{}, domain.Invalidf("deadline is more than %v after the order's creation", s.Settings.TimeoutMax)
	}
	if o.Status != domain.OrderUnpaid || !deadline.After(o.Deadline) {
		return domain.Order{}, fmt.Errorf("extend %s: %w", o.ID, domain.ErrOrderClosed)
	}
	if err := s.scheduleTimers(ctx, o.ID, deadline); err != nil {
		return domain.Order{}, err
	}
	o, change, err := s.Orders.UpdateOrder(ctx, o.ID, func(o *domain.Order) domain.Change { return o.ExtendDeadline(deadline) })
	if err != nil {
		return domain.Order{}, err
	}
	if change == domain.Refused {
		return domain.Order{}, fmt.Errorf("extend %s: %w", o.ID, domain.ErrOrderClosed)
	}
	logging.From(ctx).Info("deadline extended", logging.KeyOrderID, o.ID, "deadline", o.Deadline)
	return o, nil
}

// Cancel gives up userID's UNPAID order: its pay order CLOSED, its stock
// restored once, the order CANCELLED with USER_CANCELLED — through the
// deadline's own close, so a cancel racing a payment, the deadline or
// itself has exactly one outcome. A cancelled order is returned as it is
// (whichever reason won); a PAID one is domain.ErrOrderPaid; another
// user's is domain.ErrNotFound.
func (s *Service) Cancel(ctx context.Context, userID, id string) (domain.Order, error) {
	o, err := s.Get(ctx, userID, id)
	if err != nil {
		return domain.Order{}, err
	}
	if o.Status == domain.OrderUnpaid {
		if o, _, err = s.Closer.Cancel(ctx, o, domain.CancelUserCancelled); err != nil {
			if errors.Is(err, timeout.ErrRetryLater) {
				err = fmt.Errorf("%w: %w", domain.ErrUnavailable, err)
			}
			return domain.Order{}, err
		}
	}
	if o.Status == domain.OrderPaid {
		return domain.Order{}, fmt.Errorf("cancel %s: %w", id, domain.ErrOrderPaid)
	}
	return o, nil
}

// ListQuery selects a page of a shopper's orders.
type ListQuery struct {
	Status    domain.OrderStatus // "" for all
	PageSize  int                // 1–MaxPageSize; 0 for DefaultPageSize
	PageToken string             // from the previous page; "" for the first
}

// Page sizes of List.
const (
	DefaultPageSize = 20
	MaxPageSize     = 100
)

// Page is one page of a shopper's orders, newest first; Next is the token
// of the next page, "" on the last.
type Page struct {
	Orders []domain.Order
	Next   string
}

// cursor is what a page token carries: the last order of a page.
type cursor struct {
	CreatedAt time.Time `json:"t"`
	OrderID   string    `json:"o"`
}

// List returns a page of userID's orders, newest first. The page token is
// a cursor (the last order seen), not an offset, so orders created between
// pages neither repeat nor hide any; a token only ever selects among the
// caller's own orders. A bad query is a *domain.InvalidError.
func (s *Service) List(ctx context.Context, userID string, q ListQuery) (Page, error) {
	switch q.Status {
	case "", domain.OrderUnpaid, domain.OrderPaid, domain.OrderCancelled:
	default:
		return Page{}, domain.Invalidf("status must be UNPAID, PAID or CANCELLED")
	}
	if q.PageSize == 0 {
		q.PageSize = DefaultPageSize
	}
	if q.PageSize < 1 || q.PageSize > MaxPageSize {
		return Page{}, domain.Invalidf("pageSize must be between 1 and %d", MaxPageSize)
	}
	var after *domain.Order
	if q.PageToken != "" {
		c, err := decodeToken(q.PageToken)
		if err != nil {
			return Page{}, err
		}
		after = &domain.Order{ID: c.OrderID, CreatedAt: c.CreatedAt}
	}
	// One more than asked: a full page says whether there is a next one.
	orders, err := s.Orders.ListOrders(ctx, userID, q.Status, q.PageSize+1, after)
	if err != nil {
		return Page{}, err
	}
	p := Page{Orders: orders}
	if len(orders) > q.PageSize {
		p.Orders = orders[:q.PageSize]
		last := p.Orders[q.PageSize-1]
		p.Next = encodeToken(cursor{CreatedAt: last.CreatedAt, OrderID: last.ID})
	}
	return p, nil
}

func encodeToken(c cursor) string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeToken(s string) (cursor, error) {
	var c cursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil || !domain.ValidID(c.OrderID) || c.CreatedAt.IsZero() {
		return cursor{}, domain.Invalidf("pageToken is not a token this API gave")
	}
	return c, nil
}
