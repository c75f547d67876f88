package domain

import (
	"errors"
	"testing"
	"time"
)

func TestAllowanceClaimSettleRelease(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	limits := map[string]int64{"hot": 2}
	cases := []struct {
		name      string
		start     Allowance
		wants     []Want
		maxUnpaid int
		want      error
	}{
		{"empty allowance", Allowance{}, []Want{{"hot", 2}}, 10, nil},
		{"over the item limit at once", Allowance{}, []Want{{"hot", 3}}, 10, ErrPurchaseLimit},
		{"held units count", Allowance{Holds: map[string]Hold{"o1": {Units: map[string]int64{"hot": 1}}}}, []Want{{"hot", 2}}, 10, ErrPurchaseLimit},
		{"paid units count", Allowance{PaidUnits: map[string]int64{"hot": 2}}, []Want{{"hot", 1}}, 0, ErrPurchaseLimit},
		{"unlimited items are free", Allowance{PaidUnits: map[string]int64{"hot": 2}}, []Want{{"mug", 1000}}, 0, nil},
		{"cap reached", Allowance{Holds: map[string]Hold{"o1": {}, "o2": {}}}, []Want{{"mug", 1}}, 2, ErrTooManyUnpaid},
		{"no cap", Allowance{Holds: map[string]Hold{"o1": {}, "o2": {}}}, []Want{{"mug", 1}}, 0, nil},
		{"same order again is kept", Allowance{Holds: map[string]Hold{"new": {}, "o2": {}}}, []Want{{"hot", 5}}, 2, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := c.start
			before := len(a.Holds)
			err := a.Claim("new", c.wants, limits, c.maxUnpaid, now)
			if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Fatalf("Claim: %v, want %v", err, c.want)
			}
			if err != nil && len(a.Holds) != before {
				t.Fatal("a refused claim changed the holds")
			}
			if _, ok := a.Holds["new"]; err == nil && !ok {
				t.Fatal("claim not held")
			}
		})
	}

	a := Allowance{}
	if err := a.Claim("o1", []Want{{"hot", 1}, {"mug", 3}}, limits, 2, now); err != nil {
		t.Fatal(err)
	}
	if u := a.Holds["o1"].Units; len(u) != 1 || u["hot"] != 1 {
		t.Fatalf("hold units %v: only limited items are recorded", u)
	}
	if err := a.Claim("o2", []Want{{"hot", 1}}, limits, 2, now); err != nil {
		t.Fatal(err)
	}
	if !a.Settle("o1", HoldPaid) || a.Settle("o1", HoldPaid) || a.PaidUnits["hot"] != 1 {
		t.Fatalf("settle paid once: %+v", a)
	}
	if a.Settle("o2", HoldLive) || !a.Release("o2") || a.Release("o2") || a.Held("hot") != 1 {
		t.Fatalf("release once: %+v", a)
	}
	if NeedsAllowance([]Want{{"mug", 1}}, limits, 0) || !NeedsAllowance([]Want{{"hot", 1}}, limits, 0) || !NeedsAllowance(nil, nil, 1) {
		t.Fatal("NeedsAllowance")
	}
}
