package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/puaside/puaside/config"
	"github.com/puaside/puaside/internal/daemon"
	"github.com/puaside/puaside/internal/kamailiotest"
)

// waitLimit bounds every wait of these tests.
const waitLimit = 20 * time.Second

// presenceServer starts Kamailio with deploy/kamailio/presence.cfg on a
// fresh SQLite database (one worker) and returns it.
func presenceServer(t testing.TB) *kamailiotest.Instance {
	t.Helper()
	return kamailiotest.Start(t, kamailiotest.Options{
		Config: kamailiotest.ConfigPath(t, "presence.cfg"),
		DB:     kamailiotest.SQLite,
	})
}

// registrar starts Kamailio with deploy/kamailio/registrar.cfg in the given
// mirroring variant (WITH_REPLICATE, WITH_SIPTRACE or WITH_HEP), sending its
// copies to puaside's inputs in cfg.
func registrar(t testing.TB, variant string, cfg config.Config) *kamailiotest.Instance {
	t.Helper()
	defs := map[string]string{variant: ""}
	if len(cfg.Ingest.ReplicateListen) > 0 {
		defs["PUASIDE_REPLICATE_URI"] = kamailiotest.Str("sip:" + hostPort(cfg.Ingest.ReplicateListen[0]))
	}
	if len(cfg.Ingest.TraceListen) > 0 {
		defs["PUASIDE_TRACE_URI"] = kamailiotest.Str("sip:" + hostPort(cfg.Ingest.TraceListen[0]))
	}
	if len(cfg.Ingest.HEPListen) > 0 {
		defs["PUASIDE_HEP_URI"] = kamailiotest.Str("sip:" + hostPort(cfg.Ingest.HEPListen[0]))
	}
	if cfg.Reconcile.Enabled {
		// The registrar serves the JSON-RPC puaside's reconciliation asks.
		u, err := url.Parse(cfg.Reconcile.RPCURL)
		if err != nil || u.Port() == "" {
			t.Fatalf("reconcile.rpc_url %q: no port", cfg.Reconcile.RPCURL)
		}
		defs["WITH_RPC"] = ""
		defs["RPC_PORT"] = u.Port()
	}
	return kamailiotest.Start(t, kamailiotest.Options{
		Config:  kamailiotest.ConfigPath(t, "registrar.cfg"),
		DB:      kamailiotest.NoDB,
		Defines: defs,
	})
}

// hostPort strips the "udp:"/"tcp:" prefix of a listen entry.
func hostPort(listen string) string {
	if i := strings.Index(listen, ":"); i >= 0 && (listen[:i] == "udp" || listen[:i] == "tcp") {
		return listen[i+1:]
	}
	return listen
}

// freePort returns a loopback port free for UDP and TCP.
func freePort(t testing.TB) int {
	t.Helper()
	p, err := kamailiotest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// baseConfig is puaside's configuration for a test: every listener (the
// embedded presence server's too) on a free loopback port, an SQLite
// database in the test's directory, and the presence server as
// server_address.
func baseConfig(t testing.TB, presence *kamailiotest.Instance) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.LogLevel = "debug"
	cfg.DBURL = "sqlite://" + filepath.Join(t.TempDir(), "puaside.db")
	// Six distinct ports in one call: ports picked one by one are free
	// when picked, and two picks in a row can be the same port.
	ports, err := kamailiotest.FreePorts(6)
	if err != nil {
		t.Fatal(err)
	}
	sipPort, rp, tp, hp, httpPort, pp := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]
	cfg.PUA.Listen = []string{fmt.Sprintf("udp:127.0.0.1:%d", sipPort), fmt.Sprintf("tcp:127.0.0.1:%d", sipPort)}
	if presence != nil {
		cfg.PUA.ServerAddress = presence.URI()
	}
	cfg.PUA.RetryMin = 200 * time.Millisecond
	cfg.PUA.RetryMax = 2 * time.Second
	cfg.Ingest.ReplicateListen = []string{fmt.Sprintf("udp:127.0.0.1:%d", rp), fmt.Sprintf("tcp:127.0.0.1:%d", rp)}
	cfg.Ingest.TraceListen = []string{fmt.Sprintf("udp:127.0.0.1:%d", tp)}
	cfg.Ingest.HEPListen = []string{fmt.Sprintf("udp:127.0.0.1:%d", hp)}
	cfg.HTTP.HTTPListen = fmt.Sprintf("127.0.0.1:%d", httpPort)
	cfg.PA.Listen = []string{fmt.Sprintf("udp:127.0.0.1:%d", pp), fmt.Sprintf("tcp:127.0.0.1:%d", pp)}
	return cfg
}

// puaside is an in-process daemon under test.
type puaside struct {
	t   *testing.T
	cfg config.Config
	d   *daemon.Daemon
}

// startPuaside builds and starts a daemon from cfg; it is stopped (with a
// flush) when the test ends unless stopped before.
func startPuaside(t *testing.T, cfg config.Config) *puaside {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	d, err := daemon.New(ctx, cfg, testLogger(t))
	if err != nil {
		t.Fatalf("puaside: %v", err)
	}
	if err := d.Start(ctx); err != nil {
		t.Fatalf("puaside start: %v", err)
	}
	p := &puaside{t: t, cfg: cfg, d: d}
	t.Cleanup(p.stop)
	return p
}

// stop stops the daemon gracefully (flushing its state).
func (p *puaside) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := p.d.Stop(ctx); err != nil {
		p.t.Logf("puaside stop: %v", err)
	}
}

// eventually polls cond every 50 ms until it holds or waitLimit passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// testLogger writes the daemon's logs to the test log when -v is given or
// the test fails (go test shows t.Log output of failed tests only), and to
// nowhere when PUASIDE_TEST_QUIET is set.
func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("PUASIDE_TEST_QUIET") != "" {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
