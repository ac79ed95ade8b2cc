package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fcClosedPort returns a loopback TCP port with nothing listening on it.
func fcClosedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

// TestDaemonStartupErrors: `puaside run` with a configuration it cannot
// use exits non-zero at once, with a message naming what is wrong (and
// never the database password), and does not come up.
func TestDaemonStartupErrors(t *testing.T) {
	bin := puasideBinary(t)
	for _, tc := range []struct {
		name string
		yaml func(t *testing.T) string
		want []string // substrings of the output
		not  []string // must not appear
	}{
		{
			name: "unknown db_url scheme",
			yaml: func(*testing.T) string { return "db_url: postgres://puaside@127.0.0.1/puaside\n" },
			want: []string{"db_url", "postgres://puaside@127.0.0.1/puaside", "scheme"},
		},
		{
			name: "unreachable mysql",
			yaml: func(t *testing.T) string {
				return fmt.Sprintf("db_url: mysql://puaside:s3cret@127.0.0.1:%d/puaside\n", fcClosedPort(t))
			},
			want: []string{"mysql", "127.0.0.1:", "connection refused"},
			not:  []string{"s3cret"},
		},
		{
			name: "unknown key",
			yaml: func(*testing.T) string {
				return "log_level: info\npua:\n  default_expires: 30s\n  update_perod: 1s\n"
			},
			want: []string{`unknown key "update_perod"`, "line 4"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "puaside.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml(t)), 0o600); err != nil {
				t.Fatal(err)
			}
			out, code := runCombined(t, bin, "run", "-config", path)
			if code == 0 {
				t.Fatalf("exit status 0, want non-zero; output:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output does not name %q:\n%s", w, out)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(out, n) {
					t.Errorf("output shows %q:\n%s", n, out)
				}
			}
			if strings.Contains(out, "puaside started") {
				t.Errorf("daemon came up:\n%s", out)
			}
		})
	}
}
