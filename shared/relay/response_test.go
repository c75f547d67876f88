package relay

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

// readResponse against the answers a server may give, each followed by a
// second response on the same connection where the first leaves it open.
func TestReadResponse(t *testing.T) {
	const next = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	long := strings.Repeat("x", 600)
	cases := []struct {
		name   string
		raw    string
		status int
		detail string
		closes bool
	}{
		{"content-length", "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nbusy" + next, 503, "busy", false},
		{"empty", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" + next, 200, "", false},
		{"long body is cut, rest dropped", "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 600\r\n\r\n" + long + next, 500, long[:512], false},
		{"chunked with trailer", "HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nbad\r\n6\r\n input\r\n0\r\nX-Trailer: 1\r\n\r\n" + next, 400, "bad input", false},
		{"header names in any case", "HTTP/1.1 202 Accepted\r\ncontent-length: 3\r\nCONNECTION: Close\r\n\r\nabc", 202, "abc", true},
		{"no length: body until close", "HTTP/1.1 500 Oops\r\n\r\nuntil close", 500, "until close", true},
		{"HTTP/1.0 closes", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 200, "ok", true},
		{"HTTP/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok" + next, 200, "ok", false},
		{"interim 100 and 103", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n" + next, 204, "", false},
		{"status without reason", "HTTP/1.1 429\r\nContent-Length: 1\r\n\r\nx" + next, 429, "x", false},
		{"header longer than the buffer", "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("y", 9000) + "\r\nContent-Length: 2\r\n\r\nhi" + next, 200, "hi", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(c.raw), 4096)
			var detail [512]byte
			status, n, closes, err := readResponse(br, detail[:])
			if err != nil || status != c.status || string(detail[:n]) != c.detail || closes != c.closes {
				t.Fatalf("got %d %q closes=%v err=%v; want %d %q closes=%v", status, detail[:n], closes, err, c.status, c.detail, c.closes)
			}
			if closes {
				return
			}
			status, n, _, err = readResponse(br, detail[:])
			if err != nil || status != 200 || string(detail[:n]) != "ok" {
				t.Fatalf("next response on the connection: %d %q %v", status, detail[:n], err)
			}
		})
	}
}

func TestReadResponseErrors(t *testing.T) {
	cases := []struct {
		name string
		raw  string
		want error
	}{
		{"closed before any answer", "", errNoAnswer},
		{"not HTTP", "SSH-2.0-OpenSSH\r\n\r\n", errResponse},
		{"bad status", "HTTP/1.1 2x0 OK\r\n\r\n", errResponse},
		{"bad length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", errResponse},
		{"conflicting lengths", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", errResponse},
		{"cut in the headers", "HTTP/1.1 200 OK\r\nContent-Len", io.ErrUnexpectedEOF},
		{"cut in the body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", io.ErrUnexpectedEOF},
		{"cut in a chunked body", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", io.ErrUnexpectedEOF},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var detail [512]byte
			_, _, _, err := readResponse(bufio.NewReader(strings.NewReader(c.raw)), detail[:])
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
}
