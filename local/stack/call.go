package stack

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"time"
)

// Response is an HTTP answer.
type Response struct {
	Status int
	Body   []byte
}

// JSON decodes the body into v.
func (r Response) JSON(v any) error { return json.Unmarshal(r.Body, v) }

// ErrorCode returns the contract error code of the body, or "".
func (r Response) ErrorCode() string {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.Unmarshal(r.Body, &e)
	return e.Error.Code
}

var httpClient = &http.Client{Timeout: 60 * time.Second}

// Call sends a request; body may be nil, a []byte, a string or a value to
// encode as JSON. headers are name, value pairs.
func (s *Stack) Call(method, url string, body any, headers ...string) Response {
	s.T.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = bytes.NewReader([]byte(b))
	default:
		data, err := json.Marshal(b)
		if err != nil {
			s.T.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		s.T.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		s.T.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return Response{Status: resp.StatusCode, Body: data}
}

// Bearer returns the Authorization header pair for user.
func (s *Stack) Bearer(user string) []string {
	return []string{"Authorization", "Bearer " + s.Token(user)}
}

// Internal returns the internal credential header pair.
func (s *Stack) Internal() []string {
	return []string{"X-Internal-Token", s.Cfg.InternalSecret}
}
