package proxyrpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// DefaultMaxResponse is the largest response body read when Options gives none.
const DefaultMaxResponse = 64 << 20

// ErrTooLarge is returned when a response is larger than the configured bound.
var ErrTooLarge = errors.New("proxyrpc: response too large")

// ErrProtocol is wrapped by every error about a response that is not a
// JSON-RPC 2.0 answer to the request.
var ErrProtocol = errors.New("proxyrpc: not a JSON-RPC 2.0 response")

// Error is a JSON-RPC error object returned by the proxy (for example
// Kamailio's {"code":500,"message":"Method Not Found"} when the module
// providing a command is not loaded).
type Error struct {
	Method  string
	Code    int
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("proxyrpc: %s: error %d: %s", e.Method, e.Code, e.Message)
}

// Options configure a Client.
type Options struct {
	// HTTPClient sends the requests; nil is a client without redirects.
	HTTPClient *http.Client
	// Timeout bounds one call (request and whole response); 0 means 10 s.
	Timeout time.Duration
	// MaxResponse bounds the response body in bytes; 0 means DefaultMaxResponse.
	MaxResponse int64
}

// Client calls JSON-RPC 2.0 methods on one URL. It is safe for concurrent use.
type Client struct {
	url  string
	hc   *http.Client
	max  int64
	tout time.Duration
	id   atomic.Uint64
}

// NewClient returns a client for url (e.g. http://127.0.0.1:5071/RPC).
func NewClient(url string, o Options) *Client {
	c := &Client{url: url, hc: o.HTTPClient, max: o.MaxResponse, tout: o.Timeout}
	if c.hc == nil {
		c.hc = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}
	}
	if c.max <= 0 {
		c.max = DefaultMaxResponse
	}
	if c.tout <= 0 {
		c.tout = 10 * time.Second
	}
	return c
}

// request is a JSON-RPC 2.0 request.
type request struct {
	JSONRPC string `json:"jsonrpc"`
	Method  string `json:"method"`
	Params  []any  `json:"params,omitempty"`
	ID      uint64 `json:"id"`
}

// response is a JSON-RPC 2.0 response.
type response struct {
	JSONRPC string          `json:"jsonrpc"`
	Result  json.RawMessage `json:"result"`
	Error   *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	ID json.RawMessage `json:"id"`
}

// Call invokes method with positional params and returns the raw result.
func (c *Client) Call(ctx context.Context, method string, params ...any) (json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(ctx, c.tout)
	defer cancel()
	id := c.id.Add(1)
	body, err := json.Marshal(request{JSONRPC: "2.0", Method: method, Params: params, ID: id})
	if err != nil {
		return nil, fmt.Errorf("proxyrpc: %s: encode request: %w", method, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("proxyrpc: %s: %w", method, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	res, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("proxyrpc: %s: %w", method, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, c.max+1))
	if err != nil {
		return nil, fmt.Errorf("proxyrpc: %s: read response: %w", method, err)
	}
	if int64(len(b)) > c.max {
		return nil, fmt.Errorf("%w: %s: more than %d bytes", ErrTooLarge, method, c.max)
	}
	return decodeResponse(method, id, res.StatusCode, b)
}

// decodeResponse checks a JSON-RPC response body and returns its result.
// Kamailio answers an error with HTTP 500 and a JSON-RPC error object, so
// the body is looked at whatever the status.
func decodeResponse(method string, id uint64, status int, b []byte) (json.RawMessage, error) {
	var r response
	if err := json.Unmarshal(b, &r); err != nil {
		if status/100 != 2 {
			return nil, fmt.Errorf("%w: %s: HTTP %d", ErrProtocol, method, status)
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrProtocol, method, err)
	}
	if r.JSONRPC != "2.0" {
		return nil, fmt.Errorf("%w: %s: jsonrpc is %q", ErrProtocol, method, r.JSONRPC)
	}
	if r.Error != nil {
		return nil, &Error{Method: method, Code: r.Error.Code, Message: r.Error.Message}
	}
	if string(r.ID) != strconv.FormatUint(id, 10) {
		return nil, fmt.Errorf("%w: %s: id %s, want %d", ErrProtocol, method, r.ID, id)
	}
	if status/100 != 2 {
		return nil, fmt.Errorf("%w: %s: HTTP %d", ErrProtocol, method, status)
	}
	if len(r.Result) == 0 || string(r.Result) == "null" {
		return nil, fmt.Errorf("%w: %s: no result", ErrProtocol, method)
	}
	return r.Result, nil
}
