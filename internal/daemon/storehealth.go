package daemon

import (
	"context"
	"errors"
	"fmt"

	"github.com/puaside/puaside/dialoginfo"
	"github.com/puaside/puaside/pua"
	"github.com/puaside/puaside/usrloc"
)

// contactStore is the usrloc tracker's store, its writes noted for /readyz.
type contactStore struct {
	usrloc.Store
	h *pua.WriteHealth
}

// SaveContacts writes the contacts and notes the outcome.
func (s contactStore) SaveContacts(ctx context.Context, aors map[string][]usrloc.Binding) error {
	err := s.Store.SaveContacts(ctx, aors)
	if len(aors) > 0 {
		s.h.Note(err)
	}
	return err
}

// SetFlag writes the per-user flag and notes the outcome.
func (s contactStore) SetFlag(ctx context.Context, aor string, on bool) error {
	err := s.Store.SetFlag(ctx, aor, on)
	s.h.Note(err)
	return err
}

// DeleteFlag deletes the per-user flag and notes the outcome.
func (s contactStore) DeleteFlag(ctx context.Context, aor string) error {
	err := s.Store.DeleteFlag(ctx, aor)
	s.h.Note(err)
	return err
}

// dialogStore is the dialoginfo tracker's store, its writes noted for
// /readyz.
type dialogStore struct {
	dialoginfo.Store
	h *pua.WriteHealth
}

// SaveDialogs writes the calls and notes the outcome; a flush with nothing
// to write proves nothing and is not noted.
func (s dialogStore) SaveDialogs(ctx context.Context, upsert []dialoginfo.Record, remove []string) error {
	err := s.Store.SaveDialogs(ctx, upsert, remove)
	if len(upsert)+len(remove) > 0 {
		s.h.Note(err)
	}
	return err
}

// SaveDialogVersions writes the document versions and notes the outcome.
func (s dialogStore) SaveDialogVersions(ctx context.Context, versions map[string]uint64) error {
	err := s.Store.SaveDialogVersions(ctx, versions)
	if len(versions) > 0 {
		s.h.Note(err)
	}
	return err
}

// storeReady is the /readyz check "store writes": the engine's writes
// (publications, subscriptions) and the trackers' (usrloc contacts,
// dialoginfo calls), each unready once its writes keep failing.
func (d *Daemon) storeReady(ctx context.Context) error {
	errs := []error{d.eng.StoreReady(ctx)}
	for _, w := range []struct {
		what string
		h    *pua.WriteHealth
	}{{"usrloc contacts", d.contactWrites}, {"dialoginfo calls", d.dialogWrites}} {
		if w.h == nil {
			continue
		}
		if err := w.h.Err(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", w.what, err))
		}
	}
	return errors.Join(errs...)
}
