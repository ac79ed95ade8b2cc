package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestMaskedYAMLRoundTrip: the printed effective configuration hides every
// secret and reads back as the same configuration.
func TestMaskedYAMLRoundTrip(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "good-full.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Masked().YAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"s3cret", "hepsecret", "secret@", "auth_password: secret"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("printed configuration shows %q:\n%s", secret, out)
		}
	}
	if !strings.Contains(string(out), "default_expires: 1h\n") {
		t.Errorf("durations not written as an operator would:\n%s", out)
	}
	back, err := Parse(out)
	if err != nil {
		t.Fatalf("printed configuration does not parse: %v\n%s", err, out)
	}
	if want := c.Masked(); !reflect.DeepEqual(back, want) {
		t.Errorf("round trip differs:\n got %+v\nwant %+v", back, want)
	}
}

// TestCheckFiles: a TLS key that cannot be read is a problem with its line;
// Parse alone does not look at files.
func TestCheckFiles(t *testing.T) {
	cert := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(cert, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	in := "http:\n  tls_cert: " + cert + "\n  tls_key: /nonexistent/key.pem\n"
	if _, err := Parse([]byte(in)); err != nil {
		t.Fatalf("Parse must not look at files: %v", err)
	}
	_, err := Check([]byte(in))
	want := `invalid configuration: line 3: http.tls_key: "/nonexistent/key.pem": cannot be read: no such file or directory`
	if err == nil || err.Error() != want {
		t.Fatalf("Check: %v\nwant %s", err, want)
	}
	if _, err := Check([]byte("http:\n  tls_cert: " + cert + "\n  tls_key: " + cert + "\n")); err != nil {
		t.Fatalf("Check of readable files: %v", err)
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", time.Hour: "1h", 2 * time.Minute: "2m", 90 * time.Minute: "1h30m",
		150 * time.Second: "2m30s", 500 * time.Millisecond: "500ms", time.Hour + time.Second: "1h0m1s",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
