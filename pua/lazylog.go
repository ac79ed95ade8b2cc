package pua

import (
	"context"
	"log/slog"
)

// lazyAttrs is a slog.Handler that adds attrs to the records it handles,
// instead of handing them to the inner handler's WithAttrs up front: a
// text handler formats the attributes of WithAttrs at once, which costs
// more than a whole PUBLISH result when nothing is logged at the enabled
// level (the usual case: a result is logged at debug level only).
type lazyAttrs struct {
	inner slog.Handler
	attrs []slog.Attr
}

// withLazy is log with attrs added to every record it logs.
func withLazy(log *slog.Logger, attrs ...slog.Attr) *slog.Logger {
	return slog.New(lazyAttrs{inner: log.Handler(), attrs: attrs})
}

// Enabled implements slog.Handler.
func (h lazyAttrs) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

// Handle implements slog.Handler: the attrs come first, as WithAttrs
// would place them.
func (h lazyAttrs) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	out.AddAttrs(h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(a)
		return true
	})
	return h.inner.Handle(ctx, out)
}

// WithAttrs implements slog.Handler.
func (h lazyAttrs) WithAttrs(as []slog.Attr) slog.Handler {
	return lazyAttrs{inner: h.inner, attrs: append(h.attrs[:len(h.attrs):len(h.attrs)], as...)}
}

// WithGroup implements slog.Handler: the attrs so far stay outside it.
func (h lazyAttrs) WithGroup(name string) slog.Handler {
	return h.inner.WithAttrs(h.attrs).WithGroup(name)
}
