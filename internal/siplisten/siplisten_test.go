package siplisten

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
)

// TestServeLogsUnexpectedEnd checks that an end other than a closed
// listener is logged and a closed listener's is not.
func TestServeLogsUnexpectedEnd(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{errors.New("accept: too many open files"), true},
		{fmt.Errorf("serve: %w", net.ErrClosed), false},
		{nil, false},
	} {
		var buf bytes.Buffer
		log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
		run(log, "tcp", "127.0.0.1:5060", func() error { return tc.err })
		got := strings.Contains(buf.String(), "listener ended")
		if got != tc.want {
			t.Errorf("err %v: logged %v, want %v (log %q)", tc.err, got, tc.want, buf.String())
		}
		if tc.want && !strings.Contains(buf.String(), "transport=tcp") {
			t.Errorf("log %q lacks the transport", buf.String())
		}
	}
}

// TestWaitUDP checks, on a stack made by NewStack, that a served UDP
// listener is found and an address nobody serves is not.
func TestWaitUDP(t *testing.T) {
	st, err := NewStack(slog.New(slog.DiscardHandler), "127.0.0.1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.UA.Close()
	if st.Server == nil || st.Client == nil {
		t.Fatalf("stack %+v: want a server and a client", st)
	}
	ua, srv := st.UA, st.Server
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	Serve(slog.New(slog.DiscardHandler), "udp", pc.LocalAddr().String(), func() error { return srv.ServeUDP(pc) })
	if !WaitUDP(context.Background(), ua, pc.LocalAddr().String()) {
		t.Fatalf("served listener %s not found", pc.LocalAddr())
	}
	other, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if WaitUDP(ctx, ua, other.LocalAddr().String()) {
		t.Fatalf("unserved %s reported ready", other.LocalAddr())
	}
}
