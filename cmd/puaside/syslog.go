package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"log/syslog"
	"sync"

	"github.com/puaside/puaside/config"
)

// dialSyslog connects to the syslog of log_syslog (tag puaside, facility
// daemon).
func dialSyslog(target string) (*syslog.Writer, error) {
	network, addr, err := config.SyslogTarget(target)
	if err != nil {
		return nil, fmt.Errorf("log_syslog: %w", err)
	}
	w, err := syslog.Dial(network, addr, syslog.LOG_DAEMON|syslog.LOG_INFO, "puaside")
	if err != nil {
		return nil, fmt.Errorf("log_syslog %s: %w", target, err)
	}
	return w, nil
}

// syslogHandler formats records as the text handler does (without the
// time, which syslog adds) and sends each one with the priority of its
// level.
type syslogHandler struct {
	inner slog.Handler
	out   *syslogOut
}

// syslogOut is the writer and buffer the handlers derived by WithAttrs and
// WithGroup share.
type syslogOut struct {
	mu  sync.Mutex
	buf bytes.Buffer
	w   *syslog.Writer
}

func newSyslogHandler(w *syslog.Writer, lvl slog.Leveler) *syslogHandler {
	out := &syslogOut{w: w}
	inner := slog.NewTextHandler(&out.buf, &slog.HandlerOptions{Level: lvl,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}})
	return &syslogHandler{inner: inner, out: out}
}

// Enabled implements slog.Handler.
func (h *syslogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

// Handle implements slog.Handler.
func (h *syslogHandler) Handle(ctx context.Context, r slog.Record) error {
	o := h.out
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf.Reset()
	if err := h.inner.Handle(ctx, r); err != nil {
		return err
	}
	msg := string(bytes.TrimRight(o.buf.Bytes(), "\n"))
	switch {
	case r.Level >= slog.LevelError:
		return o.w.Err(msg)
	case r.Level >= slog.LevelWarn:
		return o.w.Warning(msg)
	case r.Level >= slog.LevelInfo:
		return o.w.Info(msg)
	}
	return o.w.Debug(msg)
}

// WithAttrs implements slog.Handler.
func (h *syslogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &syslogHandler{inner: h.inner.WithAttrs(as), out: h.out}
}

// WithGroup implements slog.Handler.
func (h *syslogHandler) WithGroup(name string) slog.Handler {
	return &syslogHandler{inner: h.inner.WithGroup(name), out: h.out}
}

// teeHandler sends every record to several handlers.
type teeHandler []slog.Handler

// Enabled implements slog.Handler.
func (t teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	for _, h := range t {
		if h.Enabled(ctx, l) {
			return true
		}
	}
	return false
}

// Handle implements slog.Handler.
func (t teeHandler) Handle(ctx context.Context, r slog.Record) error {
	var errs []error
	for _, h := range t {
		if h.Enabled(ctx, r.Level) {
			errs = append(errs, h.Handle(ctx, r.Clone()))
		}
	}
	return errors.Join(errs...)
}

// WithAttrs implements slog.Handler.
func (t teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	out := make(teeHandler, len(t))
	for i, h := range t {
		out[i] = h.WithAttrs(as)
	}
	return out
}

// WithGroup implements slog.Handler.
func (t teeHandler) WithGroup(name string) slog.Handler {
	out := make(teeHandler, len(t))
	for i, h := range t {
		out[i] = h.WithGroup(name)
	}
	return out
}
