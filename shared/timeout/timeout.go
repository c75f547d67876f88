// Package timeout decides an order whose payment deadline came, or whose
// payment was announced or checked early. HandleTimeout and the sweeper both
// call it, so the rules live in one place:
//
//   - order not UNPAID → nothing to do;
//   - deadline moved later than the event's → re-schedule only;
//   - payment SUCCESS (even if its announcement was lost) → PAID;
//   - payment state unknown (Pay unreachable or erroring) → error, retried
//     later; never cancel on a guess;
//   - otherwise → pay order CLOSED, stock restored once, order CANCELLED.
package timeout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ordertimeout/ordertimeout/shared/domain"
	"github.com/ordertimeout/ordertimeout/shared/logging"
	"github.com/ordertimeout/ordertimeout/shared/telemetry"
)

// Orders is what the decider needs of the order store.
type Orders interface {
	Order(ctx context.Context, id string) (domain.Order, error)
	UpdateOrder(ctx context.Context, id string, fn func(*domain.Order) domain.Change) (domain.Order, domain.Change, error)
}

// Payments is what it needs of Pay.
type Payments interface {
	// Query returns orderID's pay order; domain.ErrNotFound when none.
	Query(ctx context.Context, orderID string) (domain.PayOrder, error)
	// Close moves it WAITING → CLOSED (creating it CLOSED if none) and
	// returns it as stored: SUCCESS when a payment won the race.
	Close(ctx context.Context, orderID string) (domain.PayOrder, error)
}

// Stock is what it needs of DeductStock.
type Stock interface {
	Restore(ctx context.Context, orderID string) (bool, error)
	Release(ctx context.Context, orderID string) (bool, error)
}

// Timers schedules an order's timers (events.Timers on the broker).
type Timers interface {
	// ScheduleTimeout schedules the deadline check of orderID, confirmed.
	ScheduleTimeout(ctx context.Context, orderID string, deadline time.Time) error
}

// Outcome says what a decision did.
type Outcome string

const (
	NothingToDo Outcome = "nothing-to-do" // not UNPAID, or an early check found no payment
	Rescheduled Outcome = "rescheduled"   // deadline moved, or the event came early
	Paid        Outcome = "paid"
	Cancelled   Outcome = "cancelled"
	Orphan      Outcome = "orphan-released" // no order: its reservation was given back
	Reminded    Outcome = "reminded"        // the deadline-approaching event was recorded
)

// ErrRetryLater means the decision cannot be made yet; the caller retries.
var ErrRetryLater = errors.New("retry later")

// Decider applies the rules.
type Decider struct {
	Orders Orders
	Pay    Payments
	Stock  Stock
	Timers Timers
	Now    func() time.Time
	// SagaBudget is how long a create may take; an order missing that long
	// after its deadline will never appear.
	SagaBudget time.Duration
}

func (d *Decider) now() time.Time {
	if d.Now != nil {
		return d.Now().UTC()
	}
	return time.Now().UTC()
}

// Due decides orderID at the deadline an event carried.
func (d *Decider) Due(ctx context.Context, orderID string, eventDeadline time.Time) (Outcome, error) {
	log := logging.From(ctx).With(logging.KeyOrderID, orderID)
	o, err := d.Orders.Order(ctx, orderID)
	if errors.Is(err, domain.ErrNotFound) {
		return d.orphan(ctx, log, orderID, eventDeadline)
	}
	if err != nil {
		return "", err
	}
	if o.Status != domain.OrderUnpaid {
		return NothingToDo, nil
	}
	now := d.now()
	if o.Deadline.After(eventDeadline) || o.Deadline.After(now) {
		// The deadline moved later, or the event came early: one timer for
		// the order's real deadline. Its id is stable per deadline.
		if err := d.Timers.ScheduleTimeout(ctx, o.ID, o.Deadline); err != nil {
			return "", fmt.Errorf("%w: re-schedule: %w", ErrRetryLater, err)
		}
		log.Info("timeout re-scheduled", "deadline", o.Deadline, "event_deadline", eventDeadline)
		return Rescheduled, nil
	}
	if out, done, err := d.paidIfSucceeded(ctx, log, orderID); done || err != nil {
		return out, err
	}
	return d.close(ctx, log, o, domain.CancelPaymentTimeout)
}

// Cancel gives up an UNPAID order for reason (a shopper's cancel): the same
// close as at the deadline. A payment that already won makes the order
// PAID instead (Outcome Paid); an order already decided is NothingToDo.
func (d *Decider) Cancel(ctx context.Context, orderID, reason string) (Outcome, error) {
	o, log, ok, err := d.unpaid(ctx, orderID)
	if !ok || err != nil {
		return NothingToDo, err
	}
	return d.close(ctx, log, o, reason)
}

// unpaid reads orderID and reports whether it is still UNPAID, with a
// logger for it.
func (d *Decider) unpaid(ctx context.Context, orderID string) (domain.Order, *slog.Logger, bool, error) {
	log := logging.From(ctx).With(logging.KeyOrderID, orderID)
	o, err := d.Orders.Order(ctx, orderID)
	if err != nil {
		return domain.Order{}, log, false, err
	}
	return o, log, o.Status == domain.OrderUnpaid, nil
}

// close closes an UNPAID order's pay order, so no payment can land any
// more, gives its stock back once, and cancels it with reason. Every step
// is idempotent, so racing closers (the deadline, the shopper, duplicates)
// converge: one reason wins, the stock comes back once.
func (d *Decider) close(ctx context.Context, log *slog.Logger, o domain.Order, reason string) (Outcome, error) {
	p, err := d.Pay.Close(ctx, o.ID)
	if err != nil {
		return "", fmt.Errorf("%w: close pay order: %w", ErrRetryLater, err)
	}
	if p.Status == domain.PaySuccess {
		// A payment won the race against the close.
		return d.markPaid(ctx, log, o.ID)
	}
	if _, err := d.Stock.Restore(ctx, o.ID); err != nil {
		return "", fmt.Errorf("%w: restore stock: %w", ErrRetryLater, err)
	}
	_, change, err := d.Orders.UpdateOrder(ctx, o.ID, func(o *domain.Order) domain.Change {
		return o.Cancel(d.now(), reason)
	})
	if err != nil {
		return "", err
	}
	if change == domain.Refused {
		// Cannot happen while Pay refuses payments on CLOSED pay orders;
		// loud if it ever does.
		log.Error("order was PAID although its pay order is CLOSED")
		return NothingToDo, nil
	}
	if change == domain.Applied {
		telemetry.Metrics().Cancelled(ctx, o.Deadline, d.now(), reason)
	}
	log.Info("order cancelled", "reason", reason, "change", change.String())
	return Cancelled, nil
}

// Remind records the deadline-approaching event of orderID, once per
// deadline, if the order is still UNPAID with that deadline. A decided
// order, a moved deadline (its own reminder comes) and an order that does
// not exist (its create failed) are NothingToDo.
func (d *Decider) Remind(ctx context.Context, orderID string, deadline time.Time) (Outcome, error) {
	_, change, err := d.Orders.UpdateOrder(ctx, orderID, func(o *domain.Order) domain.Change { return o.Remind(deadline) })
	if errors.Is(err, domain.ErrNotFound) {
		return NothingToDo, nil
	}
	if err != nil || change != domain.Applied {
		return NothingToDo, err
	}
	return Reminded, nil
}

// Check marks orderID PAID if its payment succeeded; otherwise it does
// nothing. Payment announcements and early checks use it.
func (d *Decider) Check(ctx context.Context, orderID string) (Outcome, error) {
	_, log, ok, err := d.unpaid(ctx, orderID)
	if !ok || err != nil {
		return NothingToDo, err
	}
	out, done, err := d.paidIfSucceeded(ctx, log, orderID)
	if !done && err == nil {
		return NothingToDo, nil
	}
	return out, err
}

func (d *Decider) paidIfSucceeded(ctx context.Context, log *slog.Logger, orderID string) (Outcome, bool, error) {
	p, err := d.Pay.Query(ctx, orderID)
	switch {
	case errors.Is(err, domain.ErrNotFound):
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("%w: query payment: %w", ErrRetryLater, err)
	case p.Status == domain.PaySuccess:
		out, err := d.markPaid(ctx, log, orderID)
		return out, true, err
	}
	return "", false, nil
}

func (d *Decider) markPaid(ctx context.Context, log *slog.Logger, orderID string) (Outcome, error) {
	_, change, err := d.Orders.UpdateOrder(ctx, orderID, func(o *domain.Order) domain.Change {
		return o.MarkPaid(d.now())
	})
	if err != nil {
		return "", err
	}
	if change == domain.Refused {
		log.Error("payment SUCCESS on a CANCELLED order")
		return NothingToDo, nil
	}
	if change == domain.Applied {
		telemetry.Metrics().OrdersPaid.Add(ctx, 1)
	}
	log.Info("order paid", "change", change.String())
	return Paid, nil
}

// orphan handles a timer whose order does not exist: the create is still
// running (retry later), or it failed or crashed after reserving stock. Once
// no create can still write the order, the reservation is given back; the
// order-create transaction refuses to write an order whose reservation was
// given back, so this never races a live create.
func (d *Decider) orphan(ctx context.Context, log *slog.Logger, orderID string, deadline time.Time) (Outcome, error) {
	if d.now().Before(deadline.Add(d.SagaBudget)) {
		return "", fmt.Errorf("%w: order %q not written yet", ErrRetryLater, orderID)
	}
	restored, err := d.Stock.Release(ctx, orderID)
	if err != nil {
		return "", fmt.Errorf("%w: release orphan reservation: %w", ErrRetryLater, err)
	}
	log.Warn("timer without order: reservation released", "restored", restored)
	return Orphan, nil
}
