// Command smoke checks a running system from outside, as a shopper: an
// order that is not paid is cancelled at its deadline with its stock back,
// and an order the shopper cancels is cancelled at once. Against the local
// run it reads .run/env; against a deployment, the URLs and a shopper's ID
// token:
//
//	go run ./local/cmd/smoke                                    # against `make run`
//	go run ./local/cmd/smoke -createorder URL -deductstock URL -token "$TOKEN" -item mug
//
// It exits non-zero, saying which step failed, when anything is off.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/ordertimeout/ordertimeout/functions/createorder"
	"github.com/ordertimeout/ordertimeout/local/runenv"
)

type smoke struct {
	createOrder, deductStock, token, item string
	timeout, grace                        time.Duration
	client                                *http.Client
	start                                 time.Time
}

func main() {
	s := &smoke{client: &http.Client{Timeout: 30 * time.Second}, start: time.Now()}
	envFile := flag.String("env", ".run/env", "the file `make run` writes (used when -createorder is not given)")
	user := flag.String("user", "alice", "with -env: the demo user")
	flag.StringVar(&s.createOrder, "createorder", "", "CreateOrder's URL")
	flag.StringVar(&s.deductStock, "deductstock", "", "DeductStock's URL")
	flag.StringVar(&s.token, "token", os.Getenv("SMOKE_TOKEN"), "a shopper's ID token (default $SMOKE_TOKEN)")
	flag.StringVar(&s.item, "item", "mug", "an item in stock")
	flag.DurationVar(&s.timeout, "timeout", 10*time.Second, "the test order's payment timeout")
	flag.DurationVar(&s.grace, "grace", 2*time.Minute, "how long after the deadline the cancel may take (the sweeper's grace covers a lost timer)")
	flag.Parse()
	if s.createOrder == "" {
		e, err := runenv.Load(*envFile)
		if err != nil {
			fail(err)
		}
		s.createOrder, s.deductStock, s.token = e.URL["CreateOrder"], e.URL["DeductStock"], e.Token(*user)
	}
	if s.createOrder == "" || s.deductStock == "" || s.token == "" {
		fail(errors.New("need -createorder, -deductstock and -token (or a running `make run`)"))
	}
	if err := s.run(); err != nil {
		fail(err)
	}
	s.say("smoke test passed")
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "smoke:", err)
	os.Exit(1)
}

func (s *smoke) say(format string, args ...any) {
	fmt.Printf("[%6.1fs] %s\n", time.Since(s.start).Seconds(), fmt.Sprintf(format, args...))
}

func (s *smoke) run() error {
	before, err := s.stock()
	if err != nil {
		return err
	}
	s.say("stock of %s: %d", s.item, before)
	o, err := s.create()
	if err != nil {
		return err
	}
	s.say("created %s, UNPAID, deadline %s", o.OrderID, o.Deadline)
	if after, err := s.stock(); err != nil || after != before-1 {
		return fmt.Errorf("stock %d after the create (%v), want %d", after, err, before-1)
	}
	deadline, _ := time.Parse(time.RFC3339Nano, o.Deadline)
	got, err := s.waitCancelled(o.OrderID, time.Until(deadline)+s.grace)
	if err != nil {
		return err
	}
	if got.CancelReason != "PAYMENT_TIMEOUT" {
		return fmt.Errorf("%s cancelled with %q, want PAYMENT_TIMEOUT", o.OrderID, got.CancelReason)
	}
	late, _ := time.Parse(time.RFC3339Nano, got.CancelledAt)
	s.say("%s CANCELLED (PAYMENT_TIMEOUT) %.1f s after its deadline", o.OrderID, late.Sub(deadline).Seconds())
	if after, err := s.stock(); err != nil || after != before {
		return fmt.Errorf("stock %d after the cancel (%v), want %d back", after, err, before)
	}
	s.say("stock back to %d", before)
	o2, err := s.create()
	if err != nil {
		return err
	}
	var c createorder.OrderJSON
	if err := s.call(http.MethodPost, s.createOrder+"/"+o2.OrderID+"/cancel", nil, &c, http.StatusOK); err != nil {
		return err
	}
	if c.Status != "CANCELLED" || c.CancelReason != "USER_CANCELLED" {
		return fmt.Errorf("cancel of %s answered %s %s", o2.OrderID, c.Status, c.CancelReason)
	}
	s.say("%s cancelled by the shopper at once", o2.OrderID)
	var list createorder.ListJSON
	if err := s.call(http.MethodGet, s.createOrder+"/?status=CANCELLED&pageSize=5", nil, &list, http.StatusOK); err != nil {
		return err
	}
	if len(list.Orders) < 2 || list.Orders[0].OrderID != o2.OrderID {
		return fmt.Errorf("the shopper's cancelled orders, newest first, do not start with %s", o2.OrderID)
	}
	s.say("both listed among the shopper's cancelled orders, newest first")
	return nil
}

func (s *smoke) create() (createorder.OrderJSON, error) {
	var o createorder.OrderJSON
	body := map[string]any{"items": []map[string]any{{"itemId": s.item, "quantity": 1}}, "paymentTimeoutSeconds": int(s.timeout / time.Second)}
	err := s.call(http.MethodPost, s.createOrder+"/", body, &o, http.StatusCreated)
	return o, err
}

func (s *smoke) stock() (int64, error) {
	var it struct {
		Stock int64 `json:"stock"`
	}
	err := s.call(http.MethodGet, s.deductStock+"/"+s.item, nil, &it, http.StatusOK)
	return it.Stock, err
}

func (s *smoke) waitCancelled(id string, within time.Duration) (createorder.OrderJSON, error) {
	end := time.Now().Add(within)
	for {
		var o createorder.OrderJSON
		if err := s.call(http.MethodGet, s.createOrder+"/"+id, nil, &o, http.StatusOK); err != nil {
			return o, err
		}
		if o.Status == "CANCELLED" {
			return o, nil
		}
		if o.Status != "UNPAID" {
			return o, fmt.Errorf("%s became %s, want CANCELLED", id, o.Status)
		}
		if time.Now().After(end) {
			return o, fmt.Errorf("%s still UNPAID %v after its deadline: is the relay running?", id, s.grace)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (s *smoke) call(method, url string, body, out any, want int) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %d %s, want %d", method, url, resp.StatusCode, strings.TrimSpace(string(data)), want)
	}
	return json.Unmarshal(data, out)
}
