package mgmt

import (
	"context"
	"net/http"
)

// Ready asks /readyz: nil when the daemon is ready (database reachable,
// listeners bound, presence server reachable, store writes keeping up),
// else an *APIError naming the failed check. It works on metrics_listen as
// well as on http_listen.
func (c *Client) Ready(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/readyz", nil, nil, nil)
}
