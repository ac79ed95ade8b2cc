package daemon

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/puaside/puaside/config"
	"github.com/puaside/puaside/store"
)

// Adopt takes over the publications Kamailio's pua module left in the pua
// table (store.AdoptKamailio), naming them as cfg's trackers do, and logs
// what it did. It runs after the migrations, at `puaside migrate` and at
// start, before the engine loads the records.
func Adopt(ctx context.Context, db *store.DB, cfg config.Config, log *slog.Logger) (store.AdoptResult, error) {
	opts := store.AdoptOptions{}
	if cfg.Features.Usrloc {
		opts.UsrlocPresID = cfg.WithDefaults().Usrloc.PresID
	}
	res, err := db.AdoptKamailio(ctx, opts)
	if err != nil {
		return res, fmt.Errorf("adopt Kamailio's publications: %w", err)
	}
	if res != (store.AdoptResult{}) && log != nil {
		log.Info("adopted the publications Kamailio's pua left", "adopted", res.Adopted,
			"duplicates_to_remove", res.Removing, "expired_deleted", res.Expired, "unknown_event", res.Skipped)
	}
	return res, nil
}
