// Package kamailiotest runs a real Kamailio (Debian packages kamailio,
// kamailio-presence-modules, kamailio-sqlite-modules,
// kamailio-mysql-modules) for tests: the presence server and the
// registrar/proxy that mirrors traffic to puaside, from the configs in
// deploy/kamailio. It sits at the far ends of puaside's flow: the registrar
// feeds ingest with mirrored SIP, and the presence server receives what the
// pua engine publishes and subscribes.
//
// Every instance listens on a free loopback port (UDP and TCP on the same
// number), gets its own fresh database (an SQLite file in a temporary
// directory, or a new MariaDB database) created from Kamailio's own SQL
// scripts, and is killed with its whole process group when the test ends.
// Its log goes to the test log when the test fails, or always when
// PUASIDE_TEST_KAMAILIO_LOGS is set.
package kamailiotest

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/puaside/puaside/internal/freeport"

	_ "github.com/go-sql-driver/mysql" // database/sql driver "mysql"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"
)

// Database backends for Options.DB.
const (
	// NoDB starts Kamailio without creating a database.
	NoDB = ""
	// SQLite creates an SQLite file in the test's temporary directory.
	SQLite = "sqlite"
	// MySQL creates a fresh database on the test MariaDB/MySQL server.
	MySQL = "mysql"
)

// DefaultSQLDir is where the Debian kamailio packages install the table
// creation scripts, one subdirectory per backend (db_sqlite, mysql).
const DefaultSQLDir = "/usr/share/kamailio"

// DefaultTimeout bounds start-up and each helper wait.
const DefaultTimeout = 10 * time.Second

// Options says how to start Kamailio.
type Options struct {
	// Config is the path of the Kamailio configuration file (required).
	Config string
	// Defines are passed as -A NAME=VALUE (-A NAME when VALUE is empty).
	// String values must carry their own double quotes; see Str.
	Defines map[string]string
	// DB selects the database backend: NoDB, SQLite or MySQL. The URL is
	// passed as the DBURL define, and WITH_MYSQL is defined for MySQL.
	DB string
	// Schemas are the Kamailio SQL scripts (without "-create.sql") loaded
	// into the new database, in order. Default: standard, presence.
	Schemas []string
	// SQLDir holds Kamailio's SQL scripts. Default DefaultSQLDir.
	SQLDir string
	// Binary is the kamailio executable. Default: "kamailio" from PATH,
	// else /usr/sbin/kamailio.
	Binary string
	// Workers is passed as the WORKERS define. Default 1 (SQLite has no
	// busy timeout in db_sqlite; several workers fail with "database is
	// locked").
	Workers int
	// Timeout bounds the start-up wait. Default DefaultTimeout.
	Timeout time.Duration
	// Args are extra command-line arguments.
	Args []string
	// DBDir is the directory of the SQLite database file. Default: the
	// instance's temporary directory. Benchmarks put it on a tmpfs
	// (/dev/shm) so that the database's fsyncs do not slow the peer.
	DBDir string
}

// Instance is a running Kamailio.
type Instance struct {
	port  int
	dbURL string
	db    *sql.DB
	cmd   *exec.Cmd
	logs  *SyncBuffer
	done  chan struct{}
	once  sync.Once
	opts  Options
	dir   string
	bin   string   // the kamailio executable
	args  []string // its command line (StartAgain runs it again)
}

// Str quotes s as a Kamailio string define value: Str("sip:a") is `"sip:a"`.
func Str(s string) string { return strconv.Quote(s) }

// Start runs Kamailio as described by o and waits until it answers an
// OPTIONS request. It fails the test when Kamailio is missing, does not
// start, or does not answer within the timeout. The instance, its children
// and its database are removed when the test ends.
func Start(t testing.TB, o Options) *Instance {
	t.Helper()
	if o.Config == "" {
		t.Fatal("kamailiotest: Options.Config is required")
	}
	bin, err := findBinary(o.Binary)
	if err != nil {
		t.Fatalf("kamailiotest: %v (install the Debian packages kamailio, kamailio-presence-modules, kamailio-sqlite-modules, kamailio-mysql-modules)", err)
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.SQLDir == "" {
		o.SQLDir = DefaultSQLDir
	}
	if o.Schemas == nil {
		o.Schemas = []string{"standard", "presence"}
	}
	if o.Workers <= 0 {
		o.Workers = 1
	}
	in := &Instance{opts: o, dir: t.TempDir(), logs: &SyncBuffer{}, done: make(chan struct{})}

	switch o.DB {
	case NoDB:
	case SQLite:
		in.createSQLite(t)
	case MySQL:
		in.createMySQL(t)
	default:
		t.Fatalf("kamailiotest: unknown DB backend %q", o.DB)
	}

	port, err := FreePort()
	if err != nil {
		t.Fatalf("kamailiotest: %v", err)
	}
	in.port = port

	defs := map[string]string{
		"LISTEN_ADDR": "127.0.0.1",
		"LISTEN_PORT": strconv.Itoa(port),
		"WORKERS":     strconv.Itoa(o.Workers),
	}
	if in.dbURL != "" {
		defs["DBURL"] = Str(in.dbURL)
	}
	if o.DB == MySQL {
		defs["WITH_MYSQL"] = ""
	}
	for k, v := range o.Defines {
		defs[k] = v
	}
	args := []string{"-DD", "-E", "-f", o.Config, "-Y", in.dir, "-w", in.dir}
	for _, k := range sortedKeys(defs) {
		if v := defs[k]; v != "" {
			args = append(args, "-A", k+"="+v)
		} else {
			args = append(args, "-A", k)
		}
	}
	args = append(args, o.Args...)
	in.bin, in.args = bin, args
	in.launch(t)
	t.Cleanup(func() {
		in.Stop()
		if t.Failed() || os.Getenv("PUASIDE_TEST_KAMAILIO_LOGS") != "" {
			t.Logf("kamailiotest: kamailio %s log:\n%s", filepath.Base(o.Config), in.Logs())
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
	defer cancel()
	if err := in.waitReady(ctx); err != nil {
		t.Fatalf("kamailiotest: %s on port %d: %v\ncommand: %s %s\nlog:\n%s",
			filepath.Base(o.Config), port, err, bin, strings.Join(args, " "), in.Logs())
	}
	return in
}

// launch starts the Kamailio process of in.bin and in.args.
func (in *Instance) launch(t testing.TB) {
	t.Helper()
	cmd := exec.Command(in.bin, in.args...)
	cmd.Dir = in.dir
	cmd.Stdout = in.logs
	cmd.Stderr = in.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("kamailiotest: start %s: %v", in.bin, err)
	}
	in.cmd = cmd
	done := in.done
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
}

// Addr returns "127.0.0.1:port" (UDP and TCP).
func (in *Instance) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(in.port)) }

// Port returns the listening port.
func (in *Instance) Port() int { return in.port }

// Pid returns the process id of Kamailio's main process (its workers and
// timer processes are its children), 0 before it started.
func (in *Instance) Pid() int {
	if in.cmd == nil || in.cmd.Process == nil {
		return 0
	}
	return in.cmd.Process.Pid
}

// URI returns "sip:127.0.0.1:port".
func (in *Instance) URI() string { return "sip:" + in.Addr() }

// DBURL returns the database URL in Kamailio's form ("" without a database).
func (in *Instance) DBURL() string { return in.dbURL }

// DB returns a handle on the instance's database (nil without a database).
// Keep queries short: db_sqlite does not retry when the file is locked.
func (in *Instance) DB() *sql.DB { return in.db }

// Logs returns everything Kamailio wrote so far.
func (in *Instance) Logs() string { return in.logs.String() }

// Running reports whether the Kamailio process is still alive.
func (in *Instance) Running() bool {
	select {
	case <-in.done:
		return false
	default:
		return true
	}
}

// Count returns the number of rows of table matching where (may be empty).
func (in *Instance) Count(ctx context.Context, table, where string, args ...any) (int, error) {
	if in.db == nil {
		return 0, errors.New("kamailiotest: count: no database")
	}
	q := "SELECT COUNT(*) FROM " + table
	if where != "" {
		q += " WHERE " + where
	}
	var n int
	if err := in.db.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("kamailiotest: count %s: %w", table, err)
	}
	return n, nil
}

// Stop terminates Kamailio and all its children (SIGTERM to the process
// group, SIGKILL after 5 s). It is safe to call more than once.
func (in *Instance) Stop() {
	in.once.Do(func() {
		if in.cmd == nil || in.cmd.Process == nil {
			return
		}
		pgid := in.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-in.done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-in.done
		}
		// Children that outlived the main process.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	})
}

// waitReady sends OPTIONS over UDP until a 200 arrives or ctx ends.
func (in *Instance) waitReady(ctx context.Context) error {
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("probe socket: %w", err)
	}
	defer conn.Close()
	dst := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: in.port}
	buf := make([]byte, 65535)
	for i := 0; ; i++ {
		if !in.Running() {
			return errors.New("kamailio exited during start-up")
		}
		if _, err := conn.WriteTo(optionsProbe(conn.LocalAddr().String(), in.Addr(), i), dst); err != nil {
			return fmt.Errorf("probe send: %w", err)
		}
		deadline := time.Now().Add(200 * time.Millisecond)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		_ = conn.SetReadDeadline(deadline)
		n, _, err := conn.ReadFrom(buf)
		if err == nil && bytes.HasPrefix(buf[:n], []byte("SIP/2.0 200")) {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("no 200 to OPTIONS: %w", ctx.Err())
		}
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				// ICMP port unreachable while Kamailio is binding.
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
}

func optionsProbe(local, remote string, i int) []byte {
	return []byte(fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %s;branch=z9hG4bK-probe-%d\r\n"+
		"From: <sip:probe@127.0.0.1>;tag=probe\r\n"+
		"To: <sip:%s>\r\n"+
		"Call-ID: probe-%s\r\n"+
		"CSeq: %d OPTIONS\r\n"+
		"Max-Forwards: 70\r\n"+
		"Content-Length: 0\r\n\r\n", remote, local, i, remote, local, i+1))
}

func (in *Instance) createSQLite(t testing.TB) {
	t.Helper()
	dir := in.dir
	if in.opts.DBDir != "" {
		var err error
		if dir, err = os.MkdirTemp(in.opts.DBDir, "kamailiotest-db-"); err != nil {
			t.Fatalf("kamailiotest: database directory: %v", err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	path := filepath.Join(dir, "kamailio.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatalf("kamailiotest: open sqlite: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	in.loadSchemas(t, db, "db_sqlite")
	// WAL (persistent in the file, so Kamailio opens it so too): the
	// tests' reads must never make a write of Kamailio fail, and db_sqlite
	// has no busy timeout, so in the default rollback mode a DELETE that
	// meets a reader fails with "database is locked" and the row stays.
	if _, err := db.Exec("PRAGMA journal_mode=WAL"); err != nil {
		t.Fatalf("kamailiotest: sqlite WAL: %v", err)
	}
	in.db = db
	in.dbURL = "sqlite:///" + path // Kamailio: "sqlite://" + "/" + absolute path
}

// MySQLServer returns the "user[:pass]@host:port" of the test MariaDB/MySQL
// server: $PUASIDE_TEST_MYSQL, default root@127.0.0.1:3306 (the same server as internal/dbtest).
func MySQLServer() string {
	if s := os.Getenv("PUASIDE_TEST_MYSQL"); s != "" {
		return s
	}
	return "root@127.0.0.1:3306"
}

func (in *Instance) createMySQL(t testing.TB) {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "kamailio_test_" + hex.EncodeToString(b[:])
	server := MySQLServer()
	admin, err := sql.Open("mysql", tcpDSN(server)+"/?timeout=5s")
	if err != nil {
		t.Fatalf("kamailiotest: open mysql admin: %v", err)
	}
	defer admin.Close()
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("kamailiotest: create database on %s (MariaDB must run there): %v", server, err)
	}
	t.Cleanup(func() {
		a, err := sql.Open("mysql", tcpDSN(server)+"/?timeout=5s")
		if err == nil {
			_, _ = a.Exec("DROP DATABASE IF EXISTS " + name)
			a.Close()
		}
	})
	db, err := sql.Open("mysql", tcpDSN(server)+"/"+name+"?multiStatements=true&timeout=5s")
	if err != nil {
		t.Fatalf("kamailiotest: open mysql: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	in.loadSchemas(t, db, "mysql")
	in.db = db
	in.dbURL = "mysql://" + server + "/" + name
}

func (in *Instance) loadSchemas(t testing.TB, db *sql.DB, sub string) {
	t.Helper()
	for _, s := range in.opts.Schemas {
		path := filepath.Join(in.opts.SQLDir, sub, s+"-create.sql")
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("kamailiotest: read Kamailio schema (package kamailio or kamailio-%s-modules): %v", strings.TrimPrefix(sub, "db_"), err)
		}
		if _, err := db.Exec(string(b)); err != nil {
			t.Fatalf("kamailiotest: load %s: %v", path, err)
		}
	}
}

// tcpDSN turns "user:pass@host:port" into the driver's "user:pass@tcp(host:port)".
func tcpDSN(server string) string {
	at := strings.LastIndex(server, "@")
	if at < 0 {
		return "tcp(" + server + ")"
	}
	return server[:at] + "@tcp(" + server[at+1:] + ")"
}

func findBinary(name string) (string, error) {
	if name != "" {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
		return "", fmt.Errorf("kamailio binary %q not found", name)
	}
	if p, err := exec.LookPath("kamailio"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/kamailio"); err == nil {
		return "/usr/sbin/kamailio", nil
	}
	return "", errors.New("kamailio binary not found in PATH or /usr/sbin")
}

// FreePort returns a loopback port free for both UDP and TCP at the time of
// the call (internal/freeport).
func FreePort() (int, error) { return freeport.Port() }

// FreePorts returns n distinct loopback ports, each free for both UDP and
// TCP at the time of the call (internal/freeport).
func FreePorts(n int) ([]int, error) { return freeport.Ports(n) }

// ConfigPath returns the path of a file under the module's deploy/kamailio
// directory, found by walking up from the working directory to go.mod.
func ConfigPath(t testing.TB, name string) string {
	t.Helper()
	return deployPath(t, "kamailio", name)
}

func deployPath(t testing.TB, sub, name string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("kamailiotest: getwd: %v", err)
	}
	for i := 0; i < 20; i++ {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, "deploy", sub, name)
			if _, err := os.Stat(p); err != nil {
				t.Fatalf("kamailiotest: %v", err)
			}
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	t.Fatal("kamailiotest: go.mod not found above the working directory")
	return ""
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// SyncBuffer is a bytes.Buffer safe for one writer goroutine and concurrent
// readers (process logs captured by tests).
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// PID is the process id of the main Kamailio process, which leads the
// process group of all its children; 0 before it started.
func (in *Instance) PID() int {
	if in.cmd == nil || in.cmd.Process == nil {
		return 0
	}
	return in.cmd.Process.Pid
}
