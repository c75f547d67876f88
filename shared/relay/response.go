package relay

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http/httputil"
	"strconv"
)

// errResponse is a response the relay cannot read (not HTTP/1.x, a bad
// status line or length).
var errResponse = errors.New("malformed HTTP response")

// errNoAnswer wraps a failure to read the first byte of an answer.
var errNoAnswer = errors.New("no answer")

// readResponse reads one HTTP/1.x response to a POST from br: its status,
// up to len(detail) bytes of its body into detail (the rest is read and
// dropped), and whether the server closes the connection after it. It
// knows what the relay needs and nothing more: Content-Length, chunked
// and close-delimited bodies, "Connection: close", HTTP/1.0, 1xx interim
// answers. net/http's ReadResponse builds a full Response (header map,
// body readers) per message; this allocates nothing on the common path.
func readResponse(br *bufio.Reader, detail []byte) (status, n int, closes bool, err error) {
	for first := true; ; first = false {
		line, err := readLine(br)
		if err != nil {
			if first {
				return 0, 0, false, fmt.Errorf("%w: %w", errNoAnswer, err)
			}
			return 0, 0, false, unexpected(err)
		}
		// HTTP/1.1 200 OK
		if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
			return 0, 0, false, fmt.Errorf("%w: status line %q", errResponse, clip(line))
		}
		http10 := line[7] == '0'
		status, err = strconv.Atoi(string(line[9:12]))
		if err != nil || status < 100 || (len(line) > 12 && line[12] != ' ') {
			return 0, 0, false, fmt.Errorf("%w: status line %q", errResponse, clip(line))
		}
		length, chunked, connClose, keepAlive := int64(-1), false, false, false
		for {
			line, err := readLine(br)
			if err != nil {
				return 0, 0, false, unexpected(err)
			}
			if len(line) == 0 {
				break
			}
			name, value, ok := bytes.Cut(line, []byte(":"))
			if !ok {
				return 0, 0, false, fmt.Errorf("%w: header line %q", errResponse, clip(line))
			}
			value = bytes.TrimSpace(value)
			switch {
			case bytes.EqualFold(name, []byte("Content-Length")):
				v, err := strconv.ParseInt(string(value), 10, 64)
				if err != nil || v < 0 || (length >= 0 && v != length) {
					return 0, 0, false, fmt.Errorf("%w: Content-Length %q", errResponse, clip(value))
				}
				length = v
			case bytes.EqualFold(name, []byte("Transfer-Encoding")):
				chunked = hasToken(value, "chunked")
			case bytes.EqualFold(name, []byte("Connection")):
				connClose = connClose || hasToken(value, "close")
				keepAlive = keepAlive || hasToken(value, "keep-alive")
			}
		}
		closes = connClose || (http10 && !keepAlive)
		if status < 200 && status != 101 {
			continue // interim answer (100 Continue, 103 Early Hints): the real one follows
		}
		var body io.Reader
		switch {
		case status == 204 || status == 304 || status == 101:
			return status, 0, closes, nil
		case chunked:
			body = httputil.NewChunkedReader(br)
		case length >= 0:
			if length == 0 {
				return status, 0, closes, nil
			}
			n, err = io.ReadFull(br, detail[:min(int64(len(detail)), length)])
			if err == nil && length > int64(n) {
				_, err = br.Discard(int(length - int64(n)))
			}
			return status, n, closes, unexpected(err)
		default:
			body, closes = br, true // the body ends when the server closes
		}
		n, err = io.ReadFull(body, detail)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			err = nil
		} else if err == nil {
			_, err = io.Copy(io.Discard, body)
		}
		if chunked && err == nil {
			err = skipTrailer(br)
		}
		return status, n, closes, err
	}
}

// readLine returns the next line without its CRLF. The slice is valid
// until the next read. A line longer than br's buffer keeps its start;
// the rest is dropped (no header the relay reads is that long).
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		head := append([]byte(nil), line...)
		for err == bufio.ErrBufferFull {
			_, err = br.ReadSlice('\n')
		}
		line = head
	}
	if err != nil {
		return nil, err
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	return bytes.TrimSuffix(line, []byte("\r")), nil
}

// skipTrailer reads a chunked body's trailer section up to its blank line.
func skipTrailer(br *bufio.Reader) error {
	for {
		line, err := readLine(br)
		if err != nil {
			return unexpected(err)
		}
		if len(line) == 0 {
			return nil
		}
	}
}

// hasToken reports whether a comma-separated header value holds token.
func hasToken(value []byte, token string) bool {
	for part := range bytes.SplitSeq(value, []byte(",")) {
		if bytes.EqualFold(bytes.TrimSpace(part), []byte(token)) {
			return true
		}
	}
	return false
}

// unexpected turns an EOF inside a response into io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func clip(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}
