package main

import (
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// notifier sends service state to systemd over $NOTIFY_SOCKET
// (sd_notify(3)): READY=1 once started, RELOADING=1 and READY=1 around a
// reload, STOPPING=1 at stop. Without the variable (not started by systemd
// with Type=notify) it does nothing.
type notifier struct {
	addr string // socket path; "@..." is an abstract socket
}

// newNotifier reads $NOTIFY_SOCKET.
func newNotifier() notifier {
	return notifier{addr: os.Getenv("NOTIFY_SOCKET")}
}

// send writes one datagram of newline-separated assignments.
func (n notifier) send(state ...string) error {
	if n.addr == "" {
		return nil
	}
	addr := n.addr
	if strings.HasPrefix(addr, "@") {
		addr = "\x00" + addr[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte(strings.Join(state, "\n") + "\n")); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// ready says the daemon is up.
func (n notifier) ready() error { return n.send("READY=1", "STATUS=running") }

// reloading says a reload began; ready must follow.
func (n notifier) reloading() error {
	return n.send("RELOADING=1", "STATUS=reloading the configuration", monotonicUsec())
}

// stopping says a stop began.
func (n notifier) stopping() error { return n.send("STOPPING=1", "STATUS=stopping") }

// monotonicUsec is the MONOTONIC_USEC assignment systemd expects with
// RELOADING=1 (CLOCK_MONOTONIC in microseconds).
func monotonicUsec() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return "MONOTONIC_USEC=0"
	}
	return fmt.Sprintf("MONOTONIC_USEC=%d", ts.Nano()/1000)
}
