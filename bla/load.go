package bla

import (
	"context"
	"fmt"
	"time"
)

// maxLoadWait bounds how long a NOTIFY waits for the database lines.
const maxLoadWait = 10 * time.Second

// markLoaded opens the gate of NOTIFYs waiting for the database lines.
func (m *Manager) markLoaded() {
	m.loadOnce.Do(func() { close(m.loaded) })
}

// lockLine locks m.mu and returns the line of aor (nil if there is none).
// A line that is not known while the database lines are still being loaded
// is looked up again once they are, so that a NOTIFY arriving early in a
// restart is not refused with 481. m.mu is held on return, also on error.
func (m *Manager) lockLine(ctx context.Context, aor string) (*line, error) {
	m.mu.Lock()
	if ln := m.lines[aor]; ln != nil {
		return ln, nil
	}
	select {
	case <-m.loaded:
		return nil, nil
	default:
	}
	m.mu.Unlock()
	t := time.NewTimer(maxLoadWait)
	defer t.Stop()
	var err error
	select {
	case <-m.loaded:
	case <-ctx.Done():
		err = fmt.Errorf("bla: waiting for the shared lines: %w", ctx.Err())
	case <-t.C:
		err = fmt.Errorf("bla: shared lines not loaded after %v", maxLoadWait)
	}
	m.mu.Lock()
	if err != nil {
		return nil, err
	}
	return m.lines[aor], nil
}
