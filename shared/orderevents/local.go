package orderevents

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ordertimeout/ordertimeout/shared/clients"
)

// EnsureTopic creates topic in project and a pull subscription to it for
// each name in subs, leaving any that exist (the local run, tests; in
// production terraform declares them).
func EnsureTopic(ctx context.Context, project, topic string, subs ...string) error {
	c, err := pubsub.NewClient(ctx, project)
	if err != nil {
		return err
	}
	defer c.Close()
	topicName := "projects/" + project + "/topics/" + topic
	if _, err := c.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topicName}); err != nil && status.Code(err) != codes.AlreadyExists {
		return fmt.Errorf("create topic %s: %w", topicName, err)
	}
	for _, sub := range subs {
		name := "projects/" + project + "/subscriptions/" + sub
		if _, err := c.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: name, Topic: topicName, AckDeadlineSeconds: 30}); err != nil && status.Code(err) != codes.AlreadyExists {
			return fmt.Errorf("create subscription %s: %w", name, err)
		}
	}
	return nil
}

// Received is an order event as a subscriber sees it.
type Received struct {
	SpecVersion string            `json:"specversion"`
	ID          string            `json:"id"`
	Type        string            `json:"type"`
	Source      string            `json:"source"`
	Subject     string            `json:"subject"`
	Time        time.Time         `json:"time"`
	ContentType string            `json:"datacontenttype"`
	Data        clients.OrderJSON `json:"data"`
	// Raw is the message's data as published.
	Raw []byte `json:"-"`
	// Attributes are the Pub/Sub message's attributes.
	Attributes map[string]string `json:"-"`
}

// Decode reads a structured-mode order event.
func Decode(data []byte) (Received, error) {
	var r Received
	if err := json.Unmarshal(data, &r); err != nil {
		return r, fmt.Errorf("order event is not a JSON CloudEvent: %w", err)
	}
	r.Raw = data
	return r, nil
}

// Listen receives the events of subscription in project until ctx ends,
// calling f for each (acknowledged after f returns).
func Listen(ctx context.Context, project, subscription string, f func(Received)) error {
	c, err := pubsub.NewClient(context.WithoutCancel(ctx), project)
	if err != nil {
		return err
	}
	defer c.Close()
	err = c.Subscriber(subscription).Receive(ctx, func(_ context.Context, m *pubsub.Message) {
		r, err := Decode(m.Data)
		if err == nil {
			r.Attributes = m.Attributes
			f(r)
		}
		m.Ack()
	})
	if errors.Is(err, context.Canceled) || ctx.Err() != nil {
		return nil
	}
	return err
}
