package main

import (
	"context"
	"fmt"
	"time"
)

// ready runs `puaside ready`: exit 0 when the daemon's /readyz answers 200,
// 1 otherwise (with the failed check on stderr). It is the health check of
// images without a shell or curl; point --api at metrics_listen, which
// answers /readyz without the token.
func (c *cli) ready(args []string) int {
	fs := c.flags("[--api URL] [--timeout DURATION]",
		"Exit 0 when the daemon is ready: its /readyz answers 200 (database, listeners,\n"+
			"presence server, store writes). For health checks; --api may be http.metrics_listen,\n"+
			"which needs no token.")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	pos, code, done := c.parse(fs, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return c.usageErr(fs, "unexpected argument %q", pos[0])
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := c.client().Ready(ctx); err != nil {
		return c.remoteErr(err)
	}
	fmt.Fprintln(c.env.stdout, "ready")
	return exitOK
}
