package main

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/config"
)

// TestLogSyslog: with log_syslog the lines reach a syslog server (here a
// UDP socket) with the priority of their level, and stderr still gets them.
func TestLogSyslog(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	cfg := config.Default()
	cfg.LogSyslog = "udp://" + pc.LocalAddr().String()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	log := newLogger(cfg, &stderr, new(slog.LevelVar))
	log.With("aor", "sip:alice@example.com").Warn("presence server down")
	log.Debug("not at info level")

	_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatalf("nothing reached syslog: %v", err)
	}
	got := string(buf[:n])
	// <28>: facility daemon (3) * 8 + warning (4).
	if !strings.HasPrefix(got, "<28>") || !strings.Contains(got, "puaside") ||
		!strings.Contains(got, `msg="presence server down" aor=sip:alice@example.com`) || strings.Contains(got, "time=") {
		t.Fatalf("syslog line %q", got)
	}
	if !strings.Contains(stderr.String(), "presence server down") {
		t.Fatalf("stderr lost the line: %q", stderr.String())
	}
	_ = pc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _, err := pc.ReadFrom(buf); err == nil {
		t.Fatalf("a debug line reached syslog at info level: %q", buf[:n])
	}
}

// TestLogSyslogChecked: a bad log_syslog is a configuration error.
func TestLogSyslogChecked(t *testing.T) {
	for _, v := range []string{"syslog.example.com", "http://x:1", "udp://nohost"} {
		cfg := config.Default()
		cfg.LogSyslog = v
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "log_syslog") {
			t.Errorf("log_syslog %q: %v", v, err)
		}
	}
}
