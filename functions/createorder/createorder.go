// Package createorder is the CreateOrder function, a saga with compensation:
//
//  1. claim the Idempotency-Key (one create per key per user at a time);
//  2. reserve stock through DeductStock (all or nothing; prices from the catalog);
//  3. schedule the payment timeout on the broker, confirmed;
//  4. write the order UNPAID (only while its reservation is live);
//  5. clear the purchased items from the cart (best effort, retried; a
//     failure is logged for repair and does not fail the order).
//
// A failure in 3 or 4 gives the reservation back and answers 503, so no
// order exists without its stock and its timer.
package createorder

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"time"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/ordertimeout/ordertimeout/shared/app"
	"github.com/ordertimeout/ordertimeout/shared/auth"
	"github.com/ordertimeout/ordertimeout/shared/clients"
	"github.com/ordertimeout/ordertimeout/shared/config"
	"github.com/ordertimeout/ordertimeout/shared/domain"
	"github.com/ordertimeout/ordertimeout/shared/events"
	"github.com/ordertimeout/ordertimeout/shared/httpx"
	"github.com/ordertimeout/ordertimeout/shared/logging"
	"github.com/ordertimeout/ordertimeout/shared/store"
	"github.com/ordertimeout/ordertimeout/shared/telemetry"
	"github.com/ordertimeout/ordertimeout/shared/timeout"
)

func init() {
	functions.HTTP("CreateOrder", app.Lazy(func(ctx context.Context) (http.Handler, error) {
		env, err := app.NewEnv(ctx, config.EnvProject, config.EnvAuthSecret, config.EnvInternalSecret,
			config.EnvAMQPURL, config.EnvDeductStockURL, config.EnvClearCartURL)
		if err != nil {
			return nil, err
		}
		h := New(Deps{
			Store:     env.Store,
			Users:     env.Users,
			Internal:  env.Internal,
			Stock:     clients.Stock{C: env.Client(env.Cfg.DeductStockURL)},
			Cart:      clients.Cart{C: env.Client(env.Cfg.ClearCartURL)},
			Publisher: env.Publisher,
			Cfg:       env.Cfg,
		})
		return app.Serve("CreateOrder", env.Log, env.Cfg.Project, h), nil
	}))
}

// ExtendRequest is the body of POST /extend (internal): move an UNPAID
// order's deadline later, for example while a payment is in progress.
type ExtendRequest struct {
	OrderID  string `json:"orderId"`
	Deadline string `json:"deadline"`
}

// extend schedules the new deadline's timer first (confirmed), then moves
// the deadline. The old timer then finds a later deadline and does nothing
// but re-schedule; if the move fails, the extra timer is a harmless no-op.
func (h *Handler) extend(w http.ResponseWriter, r *http.Request) {
	var req ExtendRequest
	var deadline time.Time
	if !httpx.Bind(w, r, h.Internal, &req, func() error {
		if err := domain.CheckID("orderId", req.OrderID); err != nil {
			return err
		}
		d, err := time.Parse(time.RFC3339Nano, req.Deadline)
		if err != nil {
			return domain.Invalidf("deadline must be an RFC 3339 time")
		}
		deadline = d.UTC().Truncate(time.Microsecond)
		return nil
	}) {
		return
	}
	o, err := h.Store.Order(r.Context(), req.OrderID)
	if err != nil {
		httpx.Error(w, r, err, logging.KeyOrderID, req.OrderID)
		return
	}
	if deadline.Sub(o.CreatedAt) > h.Cfg.TimeoutMax {
		httpx.Error(w, r, domain.Invalidf("deadline is more than %v after the order's creation", h.Cfg.TimeoutMax))
		return
	}
	if o.Status != domain.OrderUnpaid || !deadline.After(o.Deadline) {
		httpx.Error(w, r, fmt.Errorf("extend %s: %w", o.ID, domain.ErrOrderClosed), logging.KeyOrderID, o.ID)
		return
	}
	if err := h.Publisher.Publish(r.Context(), events.Timeout(o.ID, deadline, h.Now(), telemetry.Inject(r.Context()))); err != nil {
		httpx.Error(w, r, fmt.Errorf("%w: schedule new deadline: %w", domain.ErrUnavailable, err), logging.KeyOrderID, o.ID)
		return
	}
	o, change, err := h.Store.UpdateOrder(r.Context(), o.ID, func(o *domain.Order) domain.Change { return o.ExtendDeadline(deadline) })
	if err != nil {
		httpx.Error(w, r, err, logging.KeyOrderID, req.OrderID)
		return
	}
	if change == domain.Refused {
		httpx.Error(w, r, fmt.Errorf("extend %s: %w", o.ID, domain.ErrOrderClosed), logging.KeyOrderID, o.ID)
		return
	}
	logging.From(r.Context()).Info("deadline extended", logging.KeyOrderID, o.ID, "deadline", o.Deadline)
	httpx.JSON(w, http.StatusOK, View(o))
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

// Deps are the handler's dependencies.
type Deps struct {
	Store     *store.Store
	Users     auth.Users
	Internal  auth.Internal
	Stock     Stock
	Cart      Cart
	Publisher timeout.Publisher
	Cfg       config.Config
	Now       func() time.Time
}

// Handler serves CreateOrder.
type Handler struct{ Deps }

// New returns the handler.
func New(d Deps) *Handler {
	if d.Now == nil {
		d.Now = time.Now
	}
	return &Handler{Deps: d}
}

// Request is the body of POST /.
type Request struct {
	Items                 []clients.LineJSON `json:"items"`
	PaymentTimeoutSeconds *int64             `json:"paymentTimeoutSeconds,omitempty"`
}

// OrderJSON is the contract's view of an order.
type OrderJSON struct {
	OrderID      string             `json:"orderId"`
	UserID       string             `json:"userId"`
	Status       string             `json:"status"`
	Items        []clients.LineJSON `json:"items"`
	TotalCents   int64              `json:"totalCents"`
	Deadline     string             `json:"deadline"`
	CreatedAt    string             `json:"createdAt"`
	PaidAt       string             `json:"paidAt,omitempty"`
	CancelledAt  string             `json:"cancelledAt,omitempty"`
	CancelReason string             `json:"cancelReason,omitempty"`
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// View converts an order to its wire form.
func View(o domain.Order) OrderJSON {
	v := OrderJSON{OrderID: o.ID, UserID: o.UserID, Status: string(o.Status), TotalCents: o.TotalCents,
		Deadline: rfc3339(o.Deadline), CreatedAt: rfc3339(o.CreatedAt), PaidAt: rfc3339(o.PaidAt),
		CancelledAt: rfc3339(o.CancelledAt), CancelReason: o.CancelReason, Items: make([]clients.LineJSON, len(o.Items))}
	for i, l := range o.Items {
		v.Items[i] = clients.LineJSON(l)
	}
	return v
}

// MaxIdempotencyKey is the longest Idempotency-Key accepted.
const MaxIdempotencyKey = 255

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/":
		h.create(w, r)
	case r.Method == http.MethodPost && r.URL.Path == "/extend":
		h.extend(w, r)
	case r.Method == http.MethodGet:
		h.get(w, r)
	default:
		httpx.MethodNotAllowed(w, r)
	}
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) {
	uid, err := auth.User(r.Context(), h.Users, r)
	if err != nil {
		httpx.Error(w, r, err)
		return
	}
	id, ok, err := httpx.PathID(r, "orderId")
	if err != nil {
		httpx.Error(w, r, err)
		return
	}
	if !ok {
		httpx.NotFound(w, r)
		return
	}
	o, err := h.Store.Order(r.Context(), id)
	if err == nil && o.UserID != uid {
		err = fmt.Errorf("order %q belongs to another user: %w", id, domain.ErrNotFound)
	}
	if err != nil {
		httpx.Error(w, r, err, logging.KeyOrderID, id)
		return
	}
	httpx.JSON(w, http.StatusOK, View(o))
}

// Parse validates a create request and returns the wants and the payment
// timeout. Every failure is a *domain.InvalidError.
func (h *Handler) Parse(req Request) ([]domain.Want, time.Duration, error) {
	wants, err := clients.Wants(req.Items)
	if err != nil {
		return nil, 0, err
	}
	d := h.Cfg.TimeoutDefault
	if req.PaymentTimeoutSeconds != nil {
		s := *req.PaymentTimeoutSeconds
		if s < int64(h.Cfg.TimeoutMin/time.Second) || s > int64(h.Cfg.TimeoutMax/time.Second) {
			return nil, 0, domain.Invalidf("paymentTimeoutSeconds must be between %d and %d",
				int64(h.Cfg.TimeoutMin/time.Second), int64(h.Cfg.TimeoutMax/time.Second))
		}
		d = time.Duration(s) * time.Second
	}
	return wants, d, nil
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

func (h *Handler) create(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	uid, err := auth.User(ctx, h.Users, r)
	if err != nil {
		httpx.Error(w, r, err)
		return
	}
	var req Request
	if err := httpx.Decode(w, r, &req); err != nil {
		httpx.Error(w, r, err)
		return
	}
	wants, payTimeout, err := h.Parse(req)
	if err != nil {
		httpx.Error(w, r, err)
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if len(key) > MaxIdempotencyKey {
		httpx.Error(w, r, domain.Invalidf("Idempotency-Key longer than %d characters", MaxIdempotencyKey))
		return
	}
	orderID := newOrderID()
	if key != "" {
		budget := h.Cfg.SweepSagaBudget
		lease, err := h.Store.ClaimKey(ctx, uid, key, requestHash(wants, payTimeout), orderID, h.Now().Add(budget))
		if err != nil {
			httpx.Error(w, r, err)
			return
		}
		if !lease.Owned {
			h.answerExisting(w, r, uid, lease)
			return
		}
	}
	o, err := h.saga(ctx, uid, orderID, wants, payTimeout, telemetry.Inject(ctx))
	if key != "" {
		state := store.LeaseDone
		if err != nil {
			state = store.LeaseFailed
		}
		if serr := h.Store.SettleKey(context.WithoutCancel(ctx), uid, key, orderID, state); serr != nil {
			logging.From(ctx).Warn("idempotency lease not settled; it expires by itself", logging.KeyOrderID, orderID, "error", serr.Error())
		}
	}
	if err != nil {
		httpx.Error(w, r, err, logging.KeyOrderID, orderID)
		return
	}
	httpx.JSON(w, http.StatusCreated, View(o))
}

// answerExisting answers a duplicate create: the order once it exists (the
// first create may still be running: wait for it a little), else 409.
func (h *Handler) answerExisting(w http.ResponseWriter, r *http.Request, uid string, lease store.Lease) {
	deadline := h.Now().Add(2 * h.Cfg.CallTimeout)
	if lease.State == store.LeaseDone {
		deadline = h.Now() // the order was written: one read finds it
	}
	for {
		o, err := h.Store.Order(r.Context(), lease.OrderID)
		if err == nil && o.UserID == uid {
			httpx.JSON(w, http.StatusOK, View(o))
			return
		}
		if err != nil && !errors.Is(err, domain.ErrNotFound) {
			httpx.Error(w, r, err)
			return
		}
		if h.Now().After(deadline) {
			httpx.Error(w, r, fmt.Errorf("order %s: %w", lease.OrderID, domain.ErrCreateInProgress))
			return
		}
		select {
		case <-r.Context().Done():
			httpx.Error(w, r, fmt.Errorf("%w: %w", domain.ErrUnavailable, r.Context().Err()))
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (h *Handler) saga(ctx context.Context, uid, orderID string, wants []domain.Want, payTimeout time.Duration, traceparent string) (domain.Order, error) {
	log := logging.From(ctx).With(logging.KeyOrderID, orderID, "user_id", uid)
	trace.SpanFromContext(ctx).SetAttributes(attribute.String(logging.KeyOrderID, orderID))
	lines, err := h.Stock.Reserve(ctx, orderID, wants)
	if err != nil {
		return domain.Order{}, err
	}
	now := h.Now().UTC()
	o, err := domain.NewOrder(orderID, uid, lines, now, now.Add(payTimeout))
	if err != nil {
		// DeductStock checks the totals before it takes anything; this only
		// guards a peer that did not.
		return domain.Order{}, h.compensate(ctx, log, orderID, err)
	}
	if err := h.Publisher.Publish(ctx, events.Timeout(orderID, o.Deadline, now, traceparent)); err != nil {
		return domain.Order{}, h.compensate(ctx, log, orderID, fmt.Errorf("%w: schedule timeout: %w", domain.ErrUnavailable, err))
	}
	for _, at := range CheckTimes(now, o.Deadline, h.Cfg.CheckLadder) {
		if err := h.Publisher.Publish(ctx, events.Check(orderID, o.Deadline, at, now, traceparent)); err != nil {
			log.Warn("early payment check not scheduled; the deadline check still runs", "at", at, "error", err.Error())
			break
		}
	}
	stored, _, err := h.Store.CreateOrder(ctx, o)
	if err != nil {
		return domain.Order{}, h.compensate(ctx, log, orderID, fmt.Errorf("%w: write order: %w", domain.ErrUnavailable, err))
	}
	itemIDs := make([]string, len(wants))
	for i, w := range wants {
		itemIDs[i] = w.ItemID
	}
	if err := h.Cart.Clear(ctx, uid, itemIDs); err != nil {
		log.Error("cart not cleared after order; repair by clearing these items", "cart_clear_failed", true, "item_ids", itemIDs, "error", err.Error())
	}
	telemetry.Metrics().OrdersCreated.Add(ctx, 1)
	log.Info("order created", "deadline", stored.Deadline, "total_cents", stored.TotalCents)
	return stored, nil
}

// compensate gives the reservation back after a later step failed. If even
// that fails, the orphan is released by the timer (or the sweeper) once the
// saga budget has passed; the order can never be written meanwhile.
func (h *Handler) compensate(ctx context.Context, log *slog.Logger, orderID string, cause error) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.Cfg.CallTimeout)
	defer cancel()
	if _, err := h.Stock.Release(cctx, orderID); err != nil {
		log.Error("compensation failed: reservation left for the sweeper", "error", err.Error(), "cause", cause.Error())
	} else {
		log.Warn("create failed: reservation given back", "cause", cause.Error())
	}
	return cause
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
