package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Shard leases (puaside_shard_leases) and live instances
// (puaside_instances) for several instances on one database. Every time is
// the database's clock, in microseconds since 1970: instances never compare
// their own clocks with each other's.

// ErrShardCount is returned by EnsureShards when the lease table holds
// shards beyond the shard_count asked: instances on one database must agree
// on shard_count.
var ErrShardCount = errors.New("shard_count differs from the lease table")

// Lease is one row of the lease table.
type Lease struct {
	// Shard is the shard number, 0 to shard_count-1.
	Shard int
	// Owner is the instance id of the owner, "" when released.
	Owner string
	// Epoch grows by one at every takeover: the fencing token.
	Epoch int64
	// Left is how long the lease still runs on the database clock
	// (zero or negative once it has expired).
	Left time.Duration
}

// leaseRow is a lease as read.
type leaseRow struct {
	Shard int    `db:"shard"`
	Owner string `db:"owner"`
	Epoch int64  `db:"epoch"`
	Left  int64  `db:"left_us"`
}

func leases(rows []leaseRow) []Lease {
	out := make([]Lease, len(rows))
	for i, r := range rows {
		out[i] = Lease{Shard: r.Shard, Owner: r.Owner, Epoch: r.Epoch, Left: time.Duration(r.Left) * time.Microsecond}
	}
	return out
}

// Instance is one live instance (a row of puaside_instances).
type Instance struct {
	// ID is the instance id.
	ID string
	// Left is how long its heartbeat still runs on the database clock.
	Left time.Duration
}

// instanceRow is an instance as read.
type instanceRow struct {
	ID   string `db:"instance_id"`
	Left int64  `db:"left_us"`
}

// nowUS is the dialect's expression for the database clock in microseconds.
func (db *DB) nowUS() string {
	if db.Dialect == MySQL {
		return "CAST(FLOOR(UNIX_TIMESTAMP(NOW(6)) * 1000000) AS SIGNED)"
	}
	return "CAST(unixepoch('subsec') * 1000000 AS INTEGER)"
}

// EnsureShards creates the lease rows of shards 0 to n-1 that do not exist
// yet (released, epoch 0). A lease table with shards at or beyond n gives
// ErrShardCount.
func (db *DB) EnsureShards(ctx context.Context, n int) error {
	if n <= 0 {
		return fmt.Errorf("store: shard count %d: want at least 1", n)
	}
	var top sql.NullInt64
	if err := db.X.GetContext(ctx, &top, `SELECT MAX(shard) FROM puaside_shard_leases`); err != nil {
		return fmt.Errorf("store: read shard leases: %w", err)
	}
	if top.Valid && top.Int64 >= int64(n) {
		return fmt.Errorf("store: shard_count %d but the lease table has shard %d: %w", n, top.Int64, ErrShardCount)
	}
	if top.Valid && top.Int64 == int64(n-1) {
		return nil
	}
	ins := "INSERT OR IGNORE INTO puaside_shard_leases (shard) VALUES (?)"
	if db.Dialect == MySQL {
		ins = "INSERT IGNORE INTO puaside_shard_leases (shard) VALUES (?)"
	}
	for i := range n {
		if _, err := db.X.ExecContext(ctx, ins, i); err != nil {
			return fmt.Errorf("store: create lease of shard %d: %w", i, err)
		}
	}
	return nil
}

// TakeLease takes the lease of shard for owner when it is free or expired
// (one conditional UPDATE on the database clock) and increments its epoch.
// It reports the new epoch, or ok false when the lease is held by a live
// owner (owner itself included: a held lease is renewed, not taken).
func (db *DB) TakeLease(ctx context.Context, shard int, owner string, ttl time.Duration) (epoch int64, ok bool, err error) {
	now := db.nowUS()
	res, err := db.X.ExecContext(ctx, `UPDATE puaside_shard_leases SET owner = ?, epoch = epoch + 1, `+
		`expires_at = `+now+` + ?, renewed_at = `+now+` WHERE shard = ? AND expires_at <= `+now,
		owner, ttl.Microseconds(), shard)
	if err != nil {
		return 0, false, fmt.Errorf("store: take lease of shard %d: %w", shard, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, false, fmt.Errorf("store: take lease of shard %d: %w", shard, err)
	}
	if n == 0 {
		return 0, false, nil
	}
	var l leaseRow
	if err := db.X.GetContext(ctx, &l, `SELECT shard, owner, epoch, 0 AS left_us FROM puaside_shard_leases WHERE shard = ?`, shard); err != nil {
		return 0, false, fmt.Errorf("store: read lease of shard %d: %w", shard, err)
	}
	if l.Owner != owner {
		// Taken and lost again between the two statements: only possible
		// with a ttl shorter than the round trip.
		return 0, false, nil
	}
	return l.Epoch, true, nil
}

// RenewLeases extends by ttl every lease owner still holds (not expired)
// and returns the leases owner holds afterwards, with their epochs. A lease
// that expired before the renewal is not renewed and not returned: it is
// lost (another instance may take it, with a new epoch).
func (db *DB) RenewLeases(ctx context.Context, owner string, ttl time.Duration) ([]Lease, error) {
	now := db.nowUS()
	if _, err := db.X.ExecContext(ctx, `UPDATE puaside_shard_leases SET expires_at = `+now+` + ?, renewed_at = `+now+
		` WHERE owner = ? AND expires_at > `+now, ttl.Microseconds(), owner); err != nil {
		return nil, fmt.Errorf("store: renew leases of %s: %w", owner, err)
	}
	var ls []leaseRow
	if err := db.X.SelectContext(ctx, &ls, `SELECT shard, owner, epoch, expires_at - `+now+` AS left_us `+
		`FROM puaside_shard_leases WHERE owner = ? AND expires_at > `+now+` ORDER BY shard`, owner); err != nil {
		return nil, fmt.Errorf("store: read leases of %s: %w", owner, err)
	}
	return leases(ls), nil
}

// ReleaseLease gives up owner's lease of shard at epoch (at a clean stop or
// when rebalancing): the shard is free at once for another instance. The
// epoch is kept; the next owner increments it. Releasing a lease that is no
// longer owner's at that epoch does nothing.
func (db *DB) ReleaseLease(ctx context.Context, shard int, owner string, epoch int64) error {
	if _, err := db.X.ExecContext(ctx, `UPDATE puaside_shard_leases SET owner = '', expires_at = 0 `+
		`WHERE shard = ? AND owner = ? AND epoch = ?`, shard, owner, epoch); err != nil {
		return fmt.Errorf("store: release lease of shard %d: %w", shard, err)
	}
	return nil
}

// Leases returns every lease row, in shard order.
func (db *DB) Leases(ctx context.Context) ([]Lease, error) {
	var ls []leaseRow
	if err := db.X.SelectContext(ctx, &ls, `SELECT shard, owner, epoch, expires_at - `+db.nowUS()+` AS left_us `+
		`FROM puaside_shard_leases ORDER BY shard`); err != nil {
		return nil, fmt.Errorf("store: read shard leases: %w", err)
	}
	return leases(ls), nil
}

// Heartbeat marks instance live for ttl on the database clock.
func (db *DB) Heartbeat(ctx context.Context, instance string, ttl time.Duration) error {
	now := db.nowUS()
	q := `INSERT INTO puaside_instances (instance_id, expires_at) VALUES (?, ` + now + ` + ?) ` +
		`ON CONFLICT (instance_id) DO UPDATE SET expires_at = excluded.expires_at`
	if db.Dialect == MySQL {
		q = `INSERT INTO puaside_instances (instance_id, expires_at) VALUES (?, ` + now + ` + ?) ` +
			`ON DUPLICATE KEY UPDATE expires_at = VALUES(expires_at)`
	}
	if _, err := db.X.ExecContext(ctx, q, instance, ttl.Microseconds()); err != nil {
		return fmt.Errorf("store: heartbeat of %s: %w", instance, err)
	}
	return nil
}

// Instances returns the live instances (heartbeat not expired), by id. Rows
// of instances dead for longer than a minute are deleted.
func (db *DB) Instances(ctx context.Context) ([]Instance, error) {
	now := db.nowUS()
	if _, err := db.X.ExecContext(ctx, `DELETE FROM puaside_instances WHERE expires_at < `+now+` - 60000000`); err != nil {
		return nil, fmt.Errorf("store: delete dead instances: %w", err)
	}
	var rows []instanceRow
	if err := db.X.SelectContext(ctx, &rows, `SELECT instance_id, expires_at - `+now+` AS left_us `+
		`FROM puaside_instances WHERE expires_at > `+now+` ORDER BY instance_id`); err != nil {
		return nil, fmt.Errorf("store: read instances: %w", err)
	}
	is := make([]Instance, len(rows))
	for i, r := range rows {
		is[i] = Instance{ID: r.ID, Left: time.Duration(r.Left) * time.Microsecond}
	}
	return is, nil
}

// Leave deletes instance's heartbeat (at a clean stop).
func (db *DB) Leave(ctx context.Context, instance string) error {
	if _, err := db.X.ExecContext(ctx, `DELETE FROM puaside_instances WHERE instance_id = ?`, instance); err != nil {
		return fmt.Errorf("store: leave %s: %w", instance, err)
	}
	return nil
}

// fenceQuerier runs the fencing check inside a write transaction.
type fenceQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// staleShards returns the shards among fences whose lease row has another
// epoch than the one given. On MySQL the lease rows are locked (FOR UPDATE)
// until the transaction ends, so a takeover waits for the write or the
// write sees the new epoch; on SQLite the transaction is the only writer.
func (db *DB) staleShards(ctx context.Context, q fenceQuerier, fences map[int]int64) (map[int]bool, error) {
	if len(fences) == 0 {
		return nil, nil
	}
	lock := ""
	if db.Dialect == MySQL {
		lock = " FOR UPDATE"
	}
	// In shard order: two transactions locking lease rows never wait for
	// each other in a cycle.
	order := make([]int, 0, len(fences))
	for sh := range fences {
		order = append(order, sh)
	}
	slices.Sort(order)
	var stale map[int]bool
	for _, sh := range order {
		ep := fences[sh]
		var cur int64
		err := q.QueryRowContext(ctx, `SELECT epoch FROM puaside_shard_leases WHERE shard = ?`+lock, sh).Scan(&cur)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("store: fence shard %d: %w", sh, err)
		}
		if err != nil || cur != ep {
			if stale == nil {
				stale = make(map[int]bool)
			}
			stale[sh] = true
		}
	}
	return stale, nil
}

// ErrFenced is returned by SaveContacts and SaveDialogs when the tracker
// writes are fenced (FenceTrackerWrites) and this instance's heartbeat has
// lapsed: the rows are not written, and the tracker keeps them to write
// once it beats again.
var ErrFenced = errors.New("this instance's heartbeat has lapsed: tracker rows not written until it beats again")

// FenceTrackerWrites makes SaveContacts and SaveDialogs write only while
// instance's heartbeat (Heartbeat) runs on the database clock, checked in
// their transaction. Several instances write the same contacts and calls
// (each receives every REGISTER and call); one paused past its lease
// (SIGSTOP, a frozen VM) would otherwise write, on resuming, what it held
// before the pause over what the others wrote since, and a row the others
// deleted (an unregistration, a call that ended) would come back for the
// next instance that starts or joins to load. Call it before the trackers
// run. The dialog versions need no fence: a stored version only grows.
func (db *DB) FenceTrackerWrites(instance string) { db.writer = instance }

// checkWriter is the fence of FenceTrackerWrites, run in the write's
// transaction.
func (db *DB) checkWriter(ctx context.Context, q fenceQuerier) error {
	if db.writer == "" {
		return nil
	}
	var live int
	if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM puaside_instances WHERE instance_id = ? AND expires_at > `+db.nowUS(),
		db.writer).Scan(&live); err != nil {
		return fmt.Errorf("store: fence %s: %w", db.writer, err)
	}
	if live == 0 {
		return fmt.Errorf("store: %s: %w", db.writer, ErrFenced)
	}
	return nil
}
