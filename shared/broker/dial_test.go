package broker

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ordertimeout/ordertimeout/local/testenv"
)

// With AMQP_URL listing several brokers, the publisher connects to the
// first that answers and, when its broker dies, to the next one: every
// publish it reports as done was confirmed.
func TestPublisherFailsOverToTheNextBroker(t *testing.T) {
	plain := testenv.AMQPURL(t)
	u, _ := url.Parse(plain)
	node := testenv.NewProxy(t, u.Host)
	list := strings.Join([]string{
		fmt.Sprintf("amqp://%s@127.0.0.1:1/", u.User.String()), // down from the start
		fmt.Sprintf("amqp://%s@%s/", u.User.String(), node.Addr()),
		plain,
	}, ",")
	if len(URLs(list)) != 3 || CheckURLs(list) != nil || CheckURLs("http://x,amqp://h/") == nil {
		t.Fatal("URLs/CheckURLs do not read the list")
	}
	topo := Topology{Prefix: testenv.UniqueName("ot-failover"), Mode: ModeLadder, Tiers: firstTier + 1}
	t.Cleanup(func() { _ = testenv.OnAMQPChannel(plain, topo.Delete) })
	p := NewPublisher(list, topo)
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	publish := func(id string) error {
		return p.Publish(ctx, Message{ID: id, Type: "t", DueAt: time.Now(), Data: []byte("{}")})
	}
	if err := publish("before"); err != nil {
		t.Fatal(err)
	}
	if got := p.conn.RemoteAddr().String(); got != node.Addr() {
		t.Fatalf("connected to %s, want the first broker that answers (%s)", got, node.Addr())
	}
	node.Kill()
	confirmed := 1
	for i := range 5 {
		if err := publish(fmt.Sprint("after-", i)); err == nil {
			confirmed++
		}
	}
	if confirmed < 5 {
		t.Fatalf("%d publishes confirmed after the node died, want the later ones on the next broker", confirmed)
	}
	ch := testenv.AMQPChannel(t, plain)
	q, err := ch.QueueDeclarePassive(topo.DueQueue(), true, false, false, false, nil)
	if err != nil || q.Messages < confirmed {
		t.Fatalf("due queue holds %d (%v); %d publishes were confirmed", q.Messages, err, confirmed)
	}
}
