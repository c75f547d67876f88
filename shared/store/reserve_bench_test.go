package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ordertimeout/ordertimeout/local/testenv"
	"github.com/ordertimeout/ordertimeout/shared/domain"
	"github.com/ordertimeout/ordertimeout/shared/store"
)

// BenchmarkReserve isolates the stock step of a flash sale: 4 store
// instances (own clients) reserving one unit per order, 64 in flight,
// over 100 one-document items, one item of 16 shards, one item of 1.
func BenchmarkReserve(b *testing.B) {
	s, project := testenv.Store(b)
	instances := []*store.Store{s, testenv.StoreOn(b, project), testenv.StoreOn(b, project), testenv.StoreOn(b, project)}
	ctx := context.Background()
	const orders, inFlight = 2000, 64
	run := func(name string, items []string) {
		var before int64
		for _, in := range instances {
			before += in.Stats().StockConflicts
		}
		work := make(chan int)
		var wg sync.WaitGroup
		start := time.Now()
		for range inFlight {
			wg.Go(func() {
				for i := range work {
					if _, err := instances[i%4].Reserve(ctx, fmt.Sprintf("%s-%d", name, i), []domain.Want{{ItemID: items[i%len(items)], Quantity: 1}}); err != nil {
						b.Error(err)
					}
				}
			})
		}
		for i := range orders {
			work <- i
		}
		close(work)
		wg.Wait()
		el := time.Since(start)
		var after int64
		for _, in := range instances {
			after += in.Stats().StockConflicts
		}
		b.Logf("%-8s %6.0f reserves/s, %.2f conflicts/order", name, orders/el.Seconds(), float64(after-before)/orders)
	}
	seed := func(prefix string, n, shards int) []string {
		var ids []string
		for i := range n {
			id := fmt.Sprintf("%s%03d", prefix, i)
			if err := s.PutItem(ctx, domain.Item{ID: id, Name: id, PriceCents: 1, Stock: 1_000_000, Shards: shards}); err != nil {
				b.Fatal(err)
			}
			ids = append(ids, id)
		}
		return ids
	}
	for r := range 2 {
		run(fmt.Sprintf("warm%d", r), seed(fmt.Sprintf("w%d", r), 100, 1))
	}
	run("spread", seed("s", 100, 1))
	run("hot16", seed("h", 1, 16))
	run("hot1", seed("k", 1, 1))
	run("hot16b", seed("hb", 1, 16))
	run("spreadb", seed("sb", 100, 1))
}
