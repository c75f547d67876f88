package broker

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// URLs splits an AMQP_URL that lists several brokers, comma-separated (the
// nodes of a cluster), into one URL each.
func URLs(list string) []string {
	var out []string
	for _, u := range strings.Split(list, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// CheckURLs reports an AMQP_URL whose entries are not amqp:// or amqps://
// URLs with a host, without saying the password.
func CheckURLs(list string) error {
	urls := URLs(list)
	if len(urls) == 0 {
		return errors.New("no broker URL")
	}
	for i, s := range urls {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "amqp" && u.Scheme != "amqps") || u.Host == "" {
			return fmt.Errorf("broker URL %d of %d is not an amqp:// or amqps:// URL with a host", i+1, len(urls))
		}
	}
	return nil
}

// Dial connects to the first broker of list that answers, in list order:
// with a cluster's nodes listed, a client whose node died reconnects to the
// next one that is up. Each attempt waits at most timeout for the TCP
// connection.
func Dial(list string, timeout time.Duration) (*amqp.Connection, error) {
	var errs []error
	for _, u := range URLs(list) {
		conn, err := amqp.DialConfig(u, amqp.Config{Heartbeat: 10 * time.Second, Dial: amqp.DefaultDial(timeout)})
		if err == nil {
			return conn, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", redact(u), err))
	}
	if len(errs) == 0 {
		return nil, errors.New("no broker URL")
	}
	return nil, errors.Join(errs...)
}

// redact drops the password from a broker URL, for errors and logs.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
