package store_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/puaside/puaside/internal/dbtest"
	"github.com/puaside/puaside/pua"
	"github.com/puaside/puaside/store"
)

// The engine's prompt writes (pua.sync_etags) at 1,200 mirrored REGISTERs a
// second: one transaction every 10 ms with about 12 records. The table
// already holds 10,000 publications, as during a load run.
const (
	promptBatch = 12
	promptTable = 10_000
)

// cpuMeter reports the process's CPU time per operation ("cpu-ns/op"),
// which, unlike ns/op, does not grow when other work shares the cores.
type cpuMeter struct{ start time.Duration }

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU(b *testing.B) *cpuMeter {
	b.Helper()
	b.ResetTimer()
	return &cpuMeter{start: processCPU()}
}

func (m *cpuMeter) report(b *testing.B) {
	b.Helper()
	b.StopTimer()
	b.ReportMetric(float64(processCPU()-m.start)/float64(b.N), "cpu-ns/op")
}

// BenchmarkSaveNewRecords12: each flush inserts 12 new publications, each
// with its first ETag (a REGISTER burst of new AoRs).
func BenchmarkSaveNewRecords12(b *testing.B) {
	db := dbtest.Open(b, store.SQLite)
	base := make([]pua.Record, promptTable)
	for i := range base {
		base[i] = publication(i)
	}
	mustSave(b, db, base, nil)
	ctx := context.Background()
	recs := make([]pua.Record, promptBatch)
	next := promptTable
	m := startCPU(b)
	for b.Loop() {
		for i := range recs {
			recs[i] = publication(next)
			next++
		}
		if err := db.SaveRecords(ctx, recs, nil); err != nil {
			b.Fatal(err)
		}
	}
	m.report(b)
}

// BenchmarkSaveETags12: each flush writes 12 existing publications whose
// ETag and expiry changed (refreshes and modifies).
func BenchmarkSaveETags12(b *testing.B) {
	db := dbtest.Open(b, store.SQLite)
	base := make([]pua.Record, promptTable)
	for i := range base {
		base[i] = publication(i)
	}
	mustSave(b, db, base, nil)
	ctx := context.Background()
	recs := make([]pua.Record, promptBatch)
	m := startCPU(b)
	for n := 0; b.Loop(); n++ {
		for i := range recs {
			k := (n*promptBatch + i) % promptTable
			recs[i] = base[k]
			recs[i].ETag = fmt.Sprintf("etag-%d-%d", n, k)
			recs[i].Expires += int64(n + 1)
		}
		if err := db.SaveRecords(ctx, recs, nil); err != nil {
			b.Fatal(err)
		}
	}
	m.report(b)
}

// BenchmarkSaveRemovals12: each flush deletes 12 stored publications and
// inserts 12 new ones, so the table keeps its size (unREGISTERs).
func BenchmarkSaveRemovals12(b *testing.B) {
	db := dbtest.Open(b, store.SQLite)
	base := make([]pua.Record, promptTable)
	for i := range base {
		base[i] = publication(i)
	}
	mustSave(b, db, base, nil)
	ctx := context.Background()
	gone, fresh := make([]pua.Record, promptBatch), make([]pua.Record, promptBatch)
	m := startCPU(b)
	for n := 0; b.Loop(); n++ {
		for i := range gone {
			gone[i] = publication(n*promptBatch + i)
			fresh[i] = publication(promptTable + n*promptBatch + i)
		}
		if err := db.SaveRecords(ctx, fresh, gone); err != nil {
			b.Fatal(err)
		}
	}
	m.report(b)
}
