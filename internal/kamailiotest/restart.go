package kamailiotest

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
)

// StartAgain starts a stopped instance again with the same command line:
// same port, same database (what it stored before the stop is still
// there), and waits until it answers OPTIONS, as Start does. It fails the
// test when the instance is still running. The restarted process is
// stopped when the test ends, like the first one.
func (in *Instance) StartAgain(t testing.TB) {
	t.Helper()
	if in.Running() {
		t.Fatal("kamailiotest: StartAgain: the instance is still running (Stop it first)")
	}
	in.done = make(chan struct{})
	in.once = sync.Once{}
	in.launch(t)
	ctx, cancel := context.WithTimeout(context.Background(), in.opts.Timeout)
	defer cancel()
	if err := in.waitReady(ctx); err != nil {
		t.Fatalf("kamailiotest: %s on port %d, started again: %v\nlog:\n%s",
			filepath.Base(in.opts.Config), in.port, err, in.Logs())
	}
}
