package mgmttest

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/puaside/puaside/pua"
)

// Contact is a registered contact as the fake usrloc lists it.
type Contact struct {
	URI     string `json:"uri"`
	Expires int    `json:"expires"`
}

// Registration is one AoR as the fake usrloc lists it.
type Registration struct {
	AoR      string    `json:"aor"`
	State    string    `json:"state"`
	Contacts []Contact `json:"contacts"`
}

// Flag is a stored publishing flag.
type Flag struct {
	AoR     string `json:"aor"`
	Enabled bool   `json:"enabled"`
}

// Registrations is a fake usrloc tracker.
type Registrations struct {
	mu    sync.Mutex
	regs  map[string]Registration
	flags map[string]bool
}

// NewRegistrations returns a fake usrloc holding regs.
func NewRegistrations(regs ...Registration) *Registrations {
	r := &Registrations{regs: map[string]Registration{}, flags: map[string]bool{}}
	for _, g := range regs {
		r.regs[g.AoR] = g
	}
	return r
}

// Registrations implements mgmt.Registrations.
func (r *Registrations) Registrations() any {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Registration, 0, len(r.regs))
	for _, g := range r.regs {
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].AoR < out[j].AoR })
	return out
}

// Registration implements mgmt.Registrations.
func (r *Registrations) Registration(aor string) (any, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	g, ok := r.regs[aor]
	return g, ok
}

// SetFlag implements mgmt.Registrations.
func (r *Registrations) SetFlag(_ context.Context, aor string, on bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flags[aor] = on
	return nil
}

// ClearFlag implements mgmt.Registrations; unknown flags give pua.ErrNotFound.
func (r *Registrations) ClearFlag(_ context.Context, aor string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.flags[aor]; !ok {
		return fmt.Errorf("usrloc: clear flag %s: %w", aor, pua.ErrNotFound)
	}
	delete(r.flags, aor)
	return nil
}

// Flags implements mgmt.Registrations.
func (r *Registrations) Flags() any {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Flag, 0, len(r.flags))
	for a, on := range r.flags {
		out = append(out, Flag{AoR: a, Enabled: on})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].AoR < out[j].AoR })
	return out
}

// Dialog is one tracked dialog as the fake dialoginfo lists it.
type Dialog struct {
	CallID string `json:"call_id"`
	AoR    string `json:"aor"`
	State  string `json:"state"`
}

// Dialogs is a fake dialoginfo tracker.
type Dialogs struct {
	List []Dialog
}

// Dialogs implements mgmt.Dialogs.
func (d *Dialogs) Dialogs() any { return d.List }

// Line is a shared line as the fake bla lists it.
type Line struct {
	AoR     string   `json:"aor"`
	Members []string `json:"members"`
}

// Lines is a fake bla manager.
type Lines struct {
	mu    sync.Mutex
	lines map[string][]string
}

// NewLines returns an empty fake bla manager.
func NewLines() *Lines { return &Lines{lines: map[string][]string{}} }

// Lines implements mgmt.Lines.
func (l *Lines) Lines() any {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Line, 0, len(l.lines))
	for a, m := range l.lines {
		out = append(out, Line{AoR: a, Members: m})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].AoR < out[j].AoR })
	return out
}

// AddLine implements mgmt.Lines.
func (l *Lines) AddLine(_ context.Context, aor string, members []string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if members == nil {
		members = []string{}
	}
	l.lines[aor] = members
	return nil
}

// RemoveLine implements mgmt.Lines; unknown lines give pua.ErrNotFound.
func (l *Lines) RemoveLine(_ context.Context, aor string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.lines[aor]; !ok {
		return fmt.Errorf("bla: remove line %s: %w", aor, pua.ErrNotFound)
	}
	delete(l.lines, aor)
	return nil
}
