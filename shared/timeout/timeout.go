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
	// Metrics records paid and cancelled orders (nil: nowhere).
	Metrics *telemetry.Instruments
	Orders  Orders
	Pay     Payments
	Stock   Stock
	Timers  Timers
	Now     func() time.Time
	// SagaBudget is how long a create may take; an order missing that long
	// after its deadline will never appear.
	SagaBudget time.Duration
}

// now is the decider's clock to the microsecond, as Firestore keeps times,
// so an order it returns after a change equals the same order read back.
func (d *Decider) now() time.Time {
	t := time.Now()
	if d.Now != nil {
		t = d.Now()
	}
	return t.UTC().Truncate(time.Microsecond)
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
	// No separate payment query first: closing the pay order answers it
	// in the same transaction (a payment that won makes the order PAID).
	_, out, err := d.close(ctx, log, o, domain.CancelPaymentTimeout)
	return out, err
}

// Cancel gives up o, an order its caller read UNPAID, for reason (a
// shopper's cancel): the same close as at the deadline. A payment that
// already won makes the order PAID instead (Outcome Paid); one decided
// since the read stays as it is. It returns the order as stored after.
func (d *Decider) Cancel(ctx context.Context, o domain.Order, reason string) (domain.Order, Outcome, error) {
	return d.close(ctx, logging.From(ctx).With(logging.KeyOrderID, o.ID), o, reason)
}

// close closes an UNPAID order's pay order, so no payment can land any
// more, gives its stock back once, and cancels it with reason. Every step
// is idempotent, so racing closers (the deadline, the shopper, duplicates)
// converge: one reason wins, the stock comes back once.
func (d *Decider) close(ctx context.Context, log *slog.Logger, o domain.Order, reason string) (domain.Order, Outcome, error) {
	p, err := d.Pay.Close(ctx, o.ID)
	if err != nil {
		return o, "", fmt.Errorf("%w: close pay order: %w", ErrRetryLater, err)
	}
	if p.Status == domain.PaySuccess {
		// A payment won the race against the close.
		return d.markPaid(ctx, log, o.ID)
	}
	if _, err := d.Stock.Restore(ctx, o.ID); err != nil {
		return o, "", fmt.Errorf("%w: restore stock: %w", ErrRetryLater, err)
	}
	stored, change, err := d.Orders.UpdateOrder(ctx, o.ID, func(o *domain.Order) domain.Change {
		return o.Cancel(d.now(), reason)
	})
	if err != nil {
		return o, "", err
	}
	if change == domain.Refused {
		// Cannot happen while Pay refuses payments on CLOSED pay orders;
		// loud if it ever does.
		log.Error("order was PAID although its pay order is CLOSED")
		return stored, NothingToDo, nil
	}
	if change == domain.Applied {
		d.Metrics.Cancelled(ctx, o.Deadline, d.now(), reason)
	}
	log.Info("order cancelled", "reason", reason, "change", change.String())
	return stored, Cancelled, nil
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
// The order is not read first: an announcement comes for an UNPAID order
// almost always, and marking it PAID reads it in its transaction anyway.
// Only when Pay has no pay order is the order read: one that does not
// exist is an error (a malformed event), not nothing to do.
func (d *Decider) Check(ctx context.Context, orderID string) (Outcome, error) {
	p, err := d.Pay.Query(ctx, orderID)
	switch {
	case errors.Is(err, domain.ErrNotFound):
		// No payment started, or no such order: only the latter is an error.
		if _, err := d.Orders.Order(ctx, orderID); err != nil {
			return NothingToDo, err
		}
		return NothingToDo, nil
	case err != nil:
		return "", fmt.Errorf("%w: query payment: %w", ErrRetryLater, err)
	case p.Status == domain.PaySuccess:
		_, out, err := d.markPaid(ctx, logging.From(ctx).With(logging.KeyOrderID, orderID), orderID)
		return out, err
	}
	return NothingToDo, nil
}

func (d *Decider) markPaid(ctx context.Context, log *slog.Logger, orderID string) (domain.Order, Outcome, error) {
	stored, change, err := d.Orders.UpdateOrder(ctx, orderID, func(o *domain.Order) domain.Change {
		return o.MarkPaid(d.now())
	})
	if err != nil {
		return stored, "", err
	}
	if change == domain.Refused {
		log.Error("payment SUCCESS on a CANCELLED order")
		return stored, NothingToDo, nil
	}
	if change == domain.Applied {
		d.Metrics.Paid(ctx)
	}
	log.Info("order paid", "change", change.String())
	return stored, Paid, nil
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
