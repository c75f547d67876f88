package broker

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ordertimeout/ordertimeout/local/testenv"
)

// amqps:// works end to end: the publisher dials TLS (verifying the
// broker's certificate against the system roots, here a CA made in the
// test and named by SSL_CERT_FILE) and its confirms come back through it.
// The TLS listener is a terminating proxy in front of the machine's broker,
// as a load balancer or a broker's own TLS listener would be.
func TestPublisherOverTLS(t *testing.T) {
	plain := testenv.AMQPURL(t)
	u, err := url.Parse(plain)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, cert := testCA(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	// Read once per process by crypto/x509, before any TLS use: no other
	// test of this package dials TLS.
	t.Setenv("SSL_CERT_FILE", caFile)
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, err := net.Dial("tcp", u.Host)
				if err != nil {
					return
				}
				defer b.Close()
				go func() { _, _ = io.Copy(b, c) }()
				_, _ = io.Copy(c, b)
			}()
		}
	}()
	topo := Topology{Prefix: testenv.UniqueName("ot-tls"), Mode: ModeLadder, Tiers: firstTier + 1}
	t.Cleanup(func() { _ = testenv.OnAMQPChannel(plain, topo.Delete) })
	secure := fmt.Sprintf("amqps://%s@%s/", u.User.String(), l.Addr())
	p := NewPublisher(secure, topo)
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range 20 {
		if err := p.Publish(ctx, Message{ID: fmt.Sprint("tls-", i), Type: "t", DueAt: time.Now(), Data: []byte("{}")}); err != nil {
			t.Fatalf("publish over amqps: %v", err)
		}
	}
	ch := testenv.AMQPChannel(t, plain)
	q, err := ch.QueueDeclarePassive(topo.DueQueue(), true, false, false, false, nil)
	if err != nil || q.Messages != 20 {
		t.Fatalf("due queue after publishing over TLS: %d messages (%v), want 20", q.Messages, err)
	}
	// A broker whose certificate does not name the host dialled is refused.
	_, port, _ := net.SplitHostPort(l.Addr().String())
	other := NewPublisher(fmt.Sprintf("amqps://%s@localhost:%s/", u.User.String(), port), topo)
	defer other.Close()
	if _, err := other.channel(context.Background()); err == nil {
		t.Fatal("dialled amqps to a broker whose certificate is not for the host")
	}
}

// testCA makes a CA and a certificate for 127.0.0.1 signed by it.
func testCA(t *testing.T) ([]byte, tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ot test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "broker"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caCert, _ := x509.ParseCertificate(caDER)
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	cert, err := tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), cert
}
