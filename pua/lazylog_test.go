package pua

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestLazyAttrs: a logger from withLazy writes the same lines as one from
// With, and formats nothing for a level it does not log.
func TestLazyAttrs(t *testing.T) {
	var eager, lazy bytes.Buffer
	opts := &slog.HandlerOptions{Level: slog.LevelInfo, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}
	le := slog.New(slog.NewTextHandler(&eager, opts)).With("aor", "sip:a@x", "op", "initial")
	ll := withLazy(slog.New(slog.NewTextHandler(&lazy, opts)), slog.String("aor", "sip:a@x"), slog.String("op", "initial"))
	for _, l := range []*slog.Logger{le, ll} {
		l.Debug("not shown", "status", 200)
		l.Warn("publish failed", "status", 500)
		l.With("extra", 1).Error("again", "status", 503)
		l.WithGroup("g").Info("grouped", "k", "v")
	}
	if eager.String() != lazy.String() {
		t.Fatalf("lazy logger wrote\n%s\nwant\n%s", lazy.String(), eager.String())
	}
	if strings.Contains(lazy.String(), "not shown") || !strings.Contains(lazy.String(), `aor=sip:a@x op=initial status=500`) {
		t.Fatalf("unexpected output:\n%s", lazy.String())
	}
}
