// Package sweeper is the safety net behind the timers. Run every minute
// (Cloud Scheduler in production, the local run's ticker locally), it finds
// UNPAID orders past their deadline plus a grace period, and reservations
// that never got an order within the saga's time budget, and decides each
// through timeout.Decider.Due — the very code path of HandleTimeout. Every
// step is idempotent, so it is safe beside the relay and beside itself.
// A non-zero find count means a timer was lost or late: worth an alert.
// It also delivers the order events a writer left in the outbox.
package sweeper

import (
	"context"
	"log/slog"
	"time"

	"github.com/ordertimeout/ordertimeout/shared/domain"
	"github.com/ordertimeout/ordertimeout/shared/logging"
	"github.com/ordertimeout/ordertimeout/shared/orderevents"
	"github.com/ordertimeout/ordertimeout/shared/telemetry"
	"github.com/ordertimeout/ordertimeout/shared/timeout"
)

// Finder runs the sweeper's queries.
type Finder interface {
	OverdueOrders(ctx context.Context, before time.Time, limit int) ([]domain.Order, error)
	StaleReservations(ctx context.Context, before time.Time, limit int) ([]domain.Reservation, error)
}

// Events redelivers order events left in the outbox (orderevents.Dispatcher).
type Events interface {
	Redeliver(ctx context.Context, after time.Duration, limit int) (orderevents.Report, error)
}

// EventsAfter is how long an event may wait for its own writer's
// delivery before the sweeper sends it.
const EventsAfter = 10 * time.Second

// Sweeper finds and decides what the timers missed.
type Sweeper struct {
	// Metrics records what a sweep had to decide (nil: nowhere).
	Metrics    *telemetry.Instruments
	Find       Finder
	Decider    *timeout.Decider
	Events     Events        // nil: order events are off
	Grace      time.Duration // after a deadline before the sweeper steps in
	SagaBudget time.Duration // after a reservation before it counts as orphaned
	PageSize   int
	MaxPages   int
	Now        func() time.Time
}

// Report says what one run found and did.
type Report struct {
	OverdueFound int            `json:"overdueFound"`
	OrphansFound int            `json:"orphansFound"`
	Decided      map[string]int `json:"decided"`
	Deferred     int            `json:"deferred"`
	// EventsDelivered: order events found waiting in the outbox and sent.
	EventsDelivered int `json:"eventsDelivered"`
	EventsFailed    int `json:"eventsFailed,omitempty"`
}

func (s *Sweeper) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

// Run sweeps once, in bounded pages.
func (s *Sweeper) Run(ctx context.Context) (Report, error) {
	page, pages := max(s.PageSize, 1), max(s.MaxPages, 1)
	rep := Report{Decided: map[string]int{}}
	log := logging.From(ctx)
	decide := func(orderID string, deadline time.Time) bool {
		out, err := s.Decider.Due(ctx, orderID, deadline)
		if err != nil {
			rep.Deferred++
			log.Warn("sweeper could not decide; next run retries", logging.KeyOrderID, orderID, "error", err.Error())
			return false
		}
		rep.Decided[string(out)]++
		return true
	}
	// sweep pages through one query until a page is short or brings no
	// progress (everything in it deferred: the next run retries).
	type find struct {
		orderID string
		at      time.Time // the deadline, or when the reservation was made
	}
	sweep := func(kind, msg string, count *int, query func() ([]find, error)) error {
		for range pages {
			found, err := query()
			if err != nil {
				return err
			}
			*count += len(found)
			s.Metrics.SweeperFound(ctx, kind, len(found))
			progress := false
			for _, f := range found {
				log.Warn(msg, logging.KeyOrderID, f.orderID, "at", f.at)
				progress = decide(f.orderID, f.at) || progress
			}
			if len(found) < page || !progress {
				return nil
			}
		}
		return nil
	}
	err := sweep("overdue", "sweeper found an overdue order: its timer was lost or late", &rep.OverdueFound, func() ([]find, error) {
		os, err := s.Find.OverdueOrders(ctx, s.now().Add(-s.Grace), page)
		out := make([]find, len(os))
		for i, o := range os {
			out[i] = find{o.ID, o.Deadline}
		}
		return out, err
	})
	if err != nil {
		return rep, err
	}
	err = sweep("orphan", "sweeper found a reservation without an order", &rep.OrphansFound, func() ([]find, error) {
		rs, err := s.Find.StaleReservations(ctx, s.now().Add(-s.SagaBudget), page)
		out := make([]find, len(rs))
		for i, r := range rs {
			out[i] = find{r.OrderID, r.CreatedAt}
		}
		return out, err
	})
	if err != nil {
		return rep, err
	}
	if s.Events != nil {
		// After the decisions, so the events they recorded but could not
		// publish go out in this run.
		er, err := s.Events.Redeliver(ctx, EventsAfter, page*pages)
		if err != nil {
			return rep, err
		}
		rep.EventsDelivered, rep.EventsFailed = er.Delivered, er.Failed
		if er.Delivered+er.Failed > 0 {
			log.Warn("sweeper delivered order events left in the outbox", "delivered", er.Delivered, "failed", er.Failed, "oldest_seconds", er.Oldest.Seconds())
		}
	}
	if rep.OverdueFound+rep.OrphansFound > 0 {
		log.Log(ctx, slog.LevelWarn, "sweep finished", "overdue_found", rep.OverdueFound, "orphans_found", rep.OrphansFound, "deferred", rep.Deferred)
	}
	return rep, nil
}
