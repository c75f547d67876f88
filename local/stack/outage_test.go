//go:build outage

package stack_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/ordertimeout/ordertimeout/local/stack"
	"github.com/ordertimeout/ordertimeout/local/testenv"
	"github.com/ordertimeout/ordertimeout/shared/domain"
)

// RabbitMQ is stopped while orders are created: each create fails cleanly
// (503, nothing reserved) or succeeds with a confirmed timer. After the
// restart every order still ends correctly, the sweeper covering any window.
func TestOutageBrokerDownDuringCreates(t *testing.T) {
	s := stack.Start(t, stack.Options{})
	init := bigSeed(t, s, 20, 10)
	var (
		mu             sync.Mutex
		created, fails int
		wg             sync.WaitGroup
	)
	stopAt := time.Now().Add(time.Second)
	for i := range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 50 * time.Millisecond) // creates span the outage's start
			user := "user00" + string(rune('0'+i%10))
			r := s.Call(http.MethodPost, s.URL(stack.CreateOrder)+"/", map[string]any{
				"items": []map[string]any{{"itemId": "item00" + string(rune('0'+i%10)), "quantity": 1}}, "paymentTimeoutSeconds": 2,
			}, s.Bearer(user)...)
			mu.Lock()
			defer mu.Unlock()
			switch r.Status {
			case 201:
				created++
			case 503:
				fails++
			default:
				t.Errorf("create during outage: %d %s", r.Status, r.Body)
			}
		}()
	}
	time.Sleep(time.Until(stopAt))
	start := testenv.StopBroker(t)
	wg.Wait()
	time.Sleep(2 * time.Second)
	start()
	_ = testenv.Rabbitmqctl("await_startup").Run()
	if created == 0 || fails == 0 {
		t.Logf("created %d, refused %d: the outage did not split the creates", created, fails)
	}
	// The relay reconnects by itself; the sweeper covers orders whose timers
	// were in flight when the broker stopped.
	deadline := time.Now().Add(90 * time.Second)
	for {
		if _, err := s.Sweeper.Run(context.Background()); err != nil {
			t.Logf("sweep: %v", err)
		}
		orders, unpaid := ordersIn(t, s, domain.OrderUnpaid)
		if unpaid == 0 {
			if len(orders) != created {
				t.Fatalf("%d orders stored, %d creates answered 201", len(orders), created)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d orders still UNPAID", unpaid)
		}
		time.Sleep(time.Second)
	}
	res := checkInvariants(t, s, init)
	t.Logf("created %d, refused %d (503); %s", created, fails, res)
}
