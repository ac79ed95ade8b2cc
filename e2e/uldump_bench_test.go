package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/internal/kamailiotest"
	"github.com/puaside/puaside/proxyrpc"
)

// BenchmarkULDumpPrivateMemory measures how large a location table a real
// Kamailio registrar (deploy/kamailio/registrar.cfg with WITH_RPC) can
// still answer ul.dump for, which reconciliation asks every interval: the
// registrar builds the whole answer in the private memory (-M) of the
// process serving the call, and with too little it sends none. For each -M
// (PUASIDE_BENCH_PKG_MIB, comma-separated MiB; default 8,32,64) phones
// register in steps (1,000 … 40,000 contacts) and ul.dump is called after
// each; it reports the largest table answered (contacts_answered), the
// answer's size in bytes per contact, and the first table not answered
// (contacts_refused, 0 if every step was); it logs how long each call took
// (reconcile.timeout must cover it). The calls are given a minute.
//
//	go test -run '^$' -bench ULDumpPrivateMemory -benchtime 1x ./e2e
func BenchmarkULDumpPrivateMemory(b *testing.B) {
	pkgs := []string{"8", "32", "64"}
	if v := os.Getenv("PUASIDE_BENCH_PKG_MIB"); v != "" {
		pkgs = strings.Split(v, ",")
	}
	for _, m := range pkgs {
		b.Run("M="+m, func(b *testing.B) {
			for range b.N {
				answered, refused, perContact := ulDumpLimit(b, m)
				b.ReportMetric(float64(answered), "contacts_answered")
				b.ReportMetric(float64(refused), "contacts_refused")
				b.ReportMetric(perContact, "B/contact")
			}
		})
	}
}

// ulDumpLimit runs one registrar with -M pkgMiB and returns the largest
// table whose ul.dump it answered (the contacts the answer lists), the
// first it did not (the contacts registered by then; 0: none), and the
// answer's bytes per contact at the largest.
func ulDumpLimit(b *testing.B, pkgMiB string) (answered, refused int, perContact float64) {
	rpcPort := freePort(b)
	reg := kamailiotest.Start(b, kamailiotest.Options{
		Config: kamailiotest.ConfigPath(b, "registrar.cfg"), DB: kamailiotest.NoDB, Workers: 4,
		Args:    []string{"-m", "512", "-M", pkgMiB},
		Defines: map[string]string{"WITH_RPC": "", "RPC_PORT": strconv.Itoa(rpcPort)},
	})
	defer reg.Stop()
	blast := newRegBlaster(b, reg.Addr())
	c := proxyrpc.NewClient(fmt.Sprintf("http://127.0.0.1:%d/RPC", rpcPort), proxyrpc.Options{Timeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	n := 0
	for _, step := range []int{1000, 2000, 4000, 6000, 8000, 10000, 12000, 15000, 20000, 30000, 40000} {
		users := make([]int, 0, step-n)
		for i := n; i < step; i++ {
			users = append(users, i)
		}
		if err := pace(ctx, users, 2000, func(i int) error { return blast.register(i, 1, 600) }); err != nil {
			b.Fatalf("register: %v", err)
		}
		n = step
		time.Sleep(time.Second) // the last REGISTERs saved
		start := time.Now()
		res, err := c.Call(ctx, "ul.dump")
		took := time.Since(start)
		if err != nil {
			b.Logf("-M %s: ul.dump of %d contacts not answered: %v", pkgMiB, n, err)
			time.Sleep(500 * time.Millisecond) // the registrar's log written
			for _, line := range strings.Split(reg.Logs(), "\n") {
				if strings.Contains(line, "ERROR") {
					b.Logf("registrar: %s", strings.TrimSpace(line))
				}
			}
			return answered, n, perContact
		}
		snap, err := proxyrpc.ParseULDump(res, "location")
		if err != nil {
			b.Fatalf("ul.dump of %d contacts: %v", n, err)
		}
		held := 0
		for _, a := range snap.AoRs {
			held += len(a.Contacts)
		}
		answered, perContact = held, float64(len(res))/float64(held)
		b.Logf("-M %s: ul.dump of %d contacts: %d bytes in %s", pkgMiB, held, len(res), took.Round(time.Millisecond))
	}
	return answered, 0, perContact
}
