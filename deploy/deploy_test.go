package deploy_test

// Checks of the deployment files (no Docker engine is needed): the compose
// stack is parsed and cross-checked against the configurations it mounts,
// the Dockerfile's build command is run, the systemd unit is verified, the
// production example is parsed by the config package, and the operator guide
// only names keys, metrics and commands that exist, and TestStack runs
// scripts/stack.sh for real.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // database/sql driver "mysql"
	"gopkg.in/yaml.v3"

	"github.com/puaside/puaside/config"
	"github.com/puaside/puaside/internal/kamailiotest"
	"github.com/puaside/puaside/internal/sipphone"
)

// repoRoot returns the module root (the directory holding go.mod).
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		dir = filepath.Dir(dir)
	}
	t.Fatal("go.mod not found above the working directory")
	return ""
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// ---------------------------------------------------------------- compose

type composeFile struct {
	Name     string                    `yaml:"name"`
	Services map[string]composeService `yaml:"services"`
	Networks map[string]composeNetwork `yaml:"networks"`
	Volumes  map[string]any            `yaml:"volumes"`
	// Extensions are the x-* keys (YAML anchors).
	Extensions map[string]any `yaml:",inline"`
}

type composeNetwork struct {
	IPAM struct {
		Config []struct {
			Subnet string `yaml:"subnet"`
		} `yaml:"config"`
	} `yaml:"ipam"`
}

type composeService struct {
	Image       string                       `yaml:"image"`
	Build       *composeBuild                `yaml:"build"`
	Restart     string                       `yaml:"restart"`
	Command     []string                     `yaml:"command"`
	Environment map[string]string            `yaml:"environment"`
	Volumes     []string                     `yaml:"volumes"`
	Ports       []string                     `yaml:"ports"`
	DependsOn   map[string]composeDependency `yaml:"depends_on"`
	Healthcheck *composeHealthcheck          `yaml:"healthcheck"`
	Networks    map[string]struct {
		IPv4Address string `yaml:"ipv4_address"`
	} `yaml:"networks"`
}

type composeBuild struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

type composeDependency struct {
	Condition string `yaml:"condition"`
}

type composeHealthcheck struct {
	Test        []string `yaml:"test"`
	Interval    string   `yaml:"interval"`
	Timeout     string   `yaml:"timeout"`
	Retries     int      `yaml:"retries"`
	StartPeriod string   `yaml:"start_period"`
}

// interpolate replaces ${VAR:-default} by its default, as compose does when
// VAR is unset, and reports a variable without a default.
func interpolate(s string) (string, error) {
	interpolation := regexp.MustCompile(`\$\{([A-Z_][A-Z0-9_]*)(:-([^}]*))?\}`)
	var err error
	out := interpolation.ReplaceAllStringFunc(s, func(m string) string {
		sm := interpolation.FindStringSubmatch(m)
		if sm[2] == "" {
			err = fmt.Errorf("%s has no default (the stack must start without a .env file)", m)
		}
		return sm[3]
	})
	return out, err
}

func loadCompose(t *testing.T, root string) composeFile {
	t.Helper()
	raw := readFile(t, filepath.Join(root, "docker-compose.yml"))
	s, err := interpolate(raw)
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	var c composeFile
	dec := yaml.NewDecoder(strings.NewReader(s))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	for k := range c.Extensions {
		if !strings.HasPrefix(k, "x-") {
			t.Errorf("docker-compose.yml: unknown top-level key %q", k)
		}
	}
	return c
}

// defines returns the -A NAME[=VALUE] options of a Kamailio command line
// (values without their quotes) and the -f file.
func defines(t *testing.T, cmd []string) (map[string]string, string) {
	t.Helper()
	defs := map[string]string{}
	var cfg string
	for i := 0; i < len(cmd); i++ {
		switch cmd[i] {
		case "-A":
			if i+1 >= len(cmd) {
				t.Fatalf("command %q: -A without a value", cmd)
			}
			i++
			name, val, _ := strings.Cut(cmd[i], "=")
			if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
				val = val[1 : len(val)-1]
			} else if strings.ContainsAny(val, `"':/`) {
				t.Errorf("define %s: a string value must be in double quotes: %q", name, cmd[i])
			}
			defs[name] = val
		case "-f":
			if i+1 >= len(cmd) {
				t.Fatalf("command %q: -f without a file", cmd)
			}
			i++
			cfg = cmd[i]
		}
	}
	return defs, cfg
}

// mountSource returns the host file mounted at target by a service ("" if none).
func mountSource(root string, svc composeService, target string) string {
	for _, v := range svc.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[1] == target && strings.HasPrefix(parts[0], ".") {
			return filepath.Join(root, parts[0])
		}
	}
	return ""
}

// hostPort splits "udp:1.2.3.4:5" into "1.2.3.4:5".
func listenHostPort(l string) (network, hostport string) {
	n, hp, _ := strings.Cut(l, ":")
	return n, hp
}

func sipHostPort(t *testing.T, uri string) string {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "sip" || u.Opaque == "" {
		t.Fatalf("%q is not a sip:host:port URI", uri)
	}
	if _, _, err := net.SplitHostPort(u.Opaque); err != nil {
		t.Fatalf("%q: %v", uri, err)
	}
	return u.Opaque
}

func serviceIP(t *testing.T, c composeFile, name string) string {
	t.Helper()
	svc, ok := c.Services[name]
	if !ok {
		t.Fatalf("docker-compose.yml: no service %q", name)
	}
	for _, n := range svc.Networks {
		if n.IPv4Address != "" {
			return n.IPv4Address
		}
	}
	t.Fatalf("service %s has no fixed ipv4_address", name)
	return ""
}

func TestComposeReferencesExist(t *testing.T) {
	root := repoRoot(t)
	c := loadCompose(t, root)
	for _, want := range []string{"mariadb", "registrar", "presence", "puaside"} {
		if _, ok := c.Services[want]; !ok {
			t.Errorf("docker-compose.yml: service %q missing", want)
		}
	}
	for name, svc := range c.Services {
		if svc.Build != nil {
			ctx := filepath.Join(root, svc.Build.Context)
			if st, err := os.Stat(ctx); err != nil || !st.IsDir() {
				t.Errorf("%s: build context %s: not a directory (%v)", name, svc.Build.Context, err)
			}
			df := svc.Build.Dockerfile
			if df == "" {
				df = "Dockerfile"
			}
			if _, err := os.Stat(filepath.Join(ctx, df)); err != nil {
				t.Errorf("%s: Dockerfile: %v", name, err)
			}
		} else if svc.Image == "" {
			t.Errorf("%s: neither image nor build", name)
		}
		for _, v := range svc.Volumes {
			src, _, ok := strings.Cut(v, ":")
			if !ok {
				t.Errorf("%s: volume %q has no target", name, v)
				continue
			}
			if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
				if _, err := os.Stat(filepath.Join(root, src)); err != nil {
					t.Errorf("%s: mounted %s: %v", name, src, err)
				}
			} else if _, ok := c.Volumes[src]; !ok {
				t.Errorf("%s: named volume %q not declared under volumes", name, src)
			}
		}
		for dep, d := range svc.DependsOn {
			other, ok := c.Services[dep]
			if !ok {
				t.Errorf("%s: depends on unknown service %q", name, dep)
				continue
			}
			if d.Condition == "service_healthy" && (other.Healthcheck == nil || len(other.Healthcheck.Test) == 0) {
				t.Errorf("%s: waits for %s to be healthy, but %s has no healthcheck", name, dep, dep)
			}
		}
		if svc.Healthcheck == nil || len(svc.Healthcheck.Test) < 2 || svc.Healthcheck.Test[0] != "CMD" {
			t.Errorf("%s: want a healthcheck in exec form [\"CMD\", ...]", name)
		}
		for n := range svc.Networks {
			if _, ok := c.Networks[n]; !ok {
				t.Errorf("%s: network %q not declared", name, n)
			}
		}
	}
}

func TestComposeWiring(t *testing.T) {
	root := repoRoot(t)
	c := loadCompose(t, root)

	// Addresses: unique and inside the network's subnet.
	if len(c.Networks) != 1 {
		t.Fatalf("want one network, got %d", len(c.Networks))
	}
	var subnet netip.Prefix
	for _, n := range c.Networks {
		if len(n.IPAM.Config) != 1 {
			t.Fatal("the network needs one ipam subnet (the services have fixed addresses)")
		}
		var err error
		if subnet, err = netip.ParsePrefix(n.IPAM.Config[0].Subnet); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]string{}
	for name := range c.Services {
		ip := serviceIP(t, c, name)
		a, err := netip.ParseAddr(ip)
		if err != nil || !subnet.Contains(a) {
			t.Errorf("%s: address %s not in %s", name, ip, subnet)
		}
		if other, dup := seen[ip]; dup {
			t.Errorf("%s and %s share %s", name, other, ip)
		}
		seen[ip] = name
	}

	// Kamailio services: the config file is mounted where -f reads it, every
	// define exists in it, and it listens on the service's address.
	kam := map[string]map[string]string{}
	cfgText := map[string]string{}
	for _, name := range []string{"registrar", "presence"} {
		svc := c.Services[name]
		defs, cfg := defines(t, svc.Command)
		src := mountSource(root, svc, cfg)
		if src == "" {
			t.Fatalf("%s: -f %s is not a file mounted from the repository", name, cfg)
		}
		if filepath.Dir(src) != filepath.Join(root, "deploy", "kamailio") {
			t.Errorf("%s: mounts %s, want a file of deploy/kamailio", name, src)
		}
		text := readFile(t, src)
		for d := range defs {
			if !regexp.MustCompile(`(?m)^#!if(n)?def\s+` + regexp.QuoteMeta(d) + `\s*$`).MatchString(text) {
				t.Errorf("%s: define %s is not used by %s", name, d, filepath.Base(src))
			}
		}
		if ip := serviceIP(t, c, name); defs["LISTEN_ADDR"] != ip {
			t.Errorf("%s: LISTEN_ADDR=%q, service address %s", name, defs["LISTEN_ADDR"], ip)
		}
		if _, err := strconv.Atoi(defs["LISTEN_PORT"]); err != nil {
			t.Errorf("%s: LISTEN_PORT=%q", name, defs["LISTEN_PORT"])
		}
		hc := strings.Join(svc.Healthcheck.Test, " ")
		if want := "/dev/tcp/" + defs["LISTEN_ADDR"] + "/" + defs["LISTEN_PORT"]; !strings.Contains(hc, want) {
			t.Errorf("%s: healthcheck %q does not probe %s", name, hc, want)
		}
		kam[name], cfgText[name] = defs, text
	}

	// The registrar mirrors with exactly one variant.
	variants := 0
	for _, v := range []string{"WITH_REPLICATE", "WITH_SIPTRACE", "WITH_HEP"} {
		if _, ok := kam["registrar"][v]; ok {
			variants++
		}
		if !strings.Contains(cfgText["registrar"], "#!ifdef "+v) {
			t.Errorf("registrar.cfg has no %s variant", v)
		}
	}
	if variants != 1 {
		t.Errorf("registrar: want exactly one mirroring variant define, got %d", variants)
	}
	if _, ok := kam["presence"]["WITH_MYSQL"]; !ok {
		t.Error("presence: WITH_MYSQL missing (the stack's database is MariaDB)")
	}

	// puaside's configuration.
	ps := c.Services["puaside"]
	cfgPath := ""
	for i, a := range ps.Command {
		if a == "-config" && i+1 < len(ps.Command) {
			cfgPath = ps.Command[i+1]
		}
	}
	if len(ps.Command) == 0 || ps.Command[0] != "run" || cfgPath == "" {
		t.Fatalf("puaside: command %q, want run -config FILE", ps.Command)
	}
	src := mountSource(root, ps, cfgPath)
	if src != filepath.Join(root, "deploy", "compose", "puaside.yaml") {
		t.Fatalf("puaside: -config %s is mounted from %q, want deploy/compose/puaside.yaml", cfgPath, src)
	}
	cfg, err := config.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.PUA.Validate(); err != nil {
		t.Fatalf("puaside.yaml: %v", err)
	}
	puasideIP := serviceIP(t, c, "puaside")

	// PUBLISHes go to the presence service.
	host, port, _ := net.SplitHostPort(sipHostPort(t, cfg.PUA.ServerAddress))
	if host != "presence" || port != kam["presence"]["LISTEN_PORT"] {
		t.Errorf("pua.server_address %s, want sip:presence:%s", cfg.PUA.ServerAddress, kam["presence"]["LISTEN_PORT"])
	}
	for _, l := range cfg.PUA.Listen {
		_, hp := listenHostPort(l)
		if h, _, _ := net.SplitHostPort(hp); h != puasideIP {
			t.Errorf("pua.listen %s: not the puaside service address %s", l, puasideIP)
		}
	}

	// The registrar's copies reach puaside's inputs.
	for _, m := range []struct {
		define string
		listen []string
	}{
		{"PUASIDE_REPLICATE_URI", cfg.Ingest.ReplicateListen},
		{"PUASIDE_TRACE_URI", cfg.Ingest.TraceListen},
		{"PUASIDE_HEP_URI", cfg.Ingest.HEPListen},
	} {
		uri, ok := kam["registrar"][m.define]
		if !ok {
			t.Errorf("registrar: %s not set", m.define)
			continue
		}
		hp := sipHostPort(t, uri)
		if !slices.Contains(m.listen, "udp:"+hp) {
			t.Errorf("registrar %s=%s: puaside has no UDP listener there (%v)", m.define, uri, m.listen)
		}
		if h, _, _ := net.SplitHostPort(hp); h != puasideIP {
			t.Errorf("registrar %s=%s: not the puaside address %s", m.define, uri, puasideIP)
		}
	}
	trusted := false
	regIP := netip.MustParseAddr(serviceIP(t, c, "registrar"))
	for _, s := range cfg.Ingest.TrustedSources {
		if p, err := netip.ParsePrefix(s); err == nil && p.Contains(regIP) {
			trusted = true
		}
	}
	if !trusted {
		t.Errorf("ingest.trusted_sources %v does not contain the registrar %s", cfg.Ingest.TrustedSources, regIP)
	}

	// Databases: puaside and the presence server use the mariadb service with
	// the accounts the init script creates.
	initSQL := readFile(t, filepath.Join(root, "deploy", "compose", "mariadb", "00-databases.sql"))
	for _, d := range []struct{ who, url string }{{"puaside db_url", cfg.DBURL}, {"presence DBURL", kam["presence"]["DBURL"]}} {
		u, err := url.Parse(d.url)
		if err != nil || u.Scheme != "mysql" {
			t.Errorf("%s %q: want mysql://", d.who, d.url)
			continue
		}
		if u.Hostname() != "mariadb" {
			t.Errorf("%s: host %q, want the mariadb service", d.who, u.Hostname())
		}
		pass, _ := u.User.Password()
		db := strings.TrimPrefix(u.Path, "/")
		for _, want := range []string{
			"CREATE DATABASE IF NOT EXISTS " + db + ";",
			fmt.Sprintf("CREATE USER IF NOT EXISTS '%s'@'%%' IDENTIFIED BY '%s';", u.User.Username(), pass),
			fmt.Sprintf("GRANT ALL PRIVILEGES ON %s.* TO '%s'@'%%';", db, u.User.Username()),
		} {
			if !strings.Contains(initSQL, want) {
				t.Errorf("%s: 00-databases.sql lacks %q", d.who, want)
			}
		}
	}

	// HTTP: published port, healthcheck and the configuration agree.
	_, httpPort, err := net.SplitHostPort(cfg.HTTP.HTTPListen)
	if err != nil {
		t.Fatal(err)
	}
	published := false
	for _, p := range ps.Ports {
		if strings.HasSuffix(p, ":"+httpPort+"/tcp") {
			published = true
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("puaside: HTTP port %q published beyond the host's loopback without a token", p)
			}
		}
	}
	if !published {
		t.Errorf("puaside: HTTP port %s not published (%v)", httpPort, ps.Ports)
	}
	// The healthcheck asks /readyz (it covers the database) on
	// metrics_listen, which answers without the token.
	hc := ps.Healthcheck.Test
	mhost, mport, err := net.SplitHostPort(cfg.HTTP.MetricsListen)
	if err != nil || mhost != "127.0.0.1" {
		t.Errorf("puaside: http.metrics_listen %q, want a loopback socket for the healthcheck", cfg.HTTP.MetricsListen)
	}
	if len(hc) < 3 || hc[2] != "ready" {
		t.Errorf("puaside healthcheck %q: want `puaside ready` (/readyz: database, listeners, presence server)", hc)
	}
	if i := slices.Index(hc, "--api"); i < 0 || i+1 >= len(hc) || hc[i+1] != "http://127.0.0.1:"+mport {
		t.Errorf("puaside healthcheck %q: want --api http://127.0.0.1:%s (metrics_listen, no token needed)", hc, mport)
	}
}

// TestComposeKamailioSchema checks that the SQL files MariaDB loads are
// Kamailio's own, as installed by the kamailio-mysql-modules package.
func TestComposeKamailioSchema(t *testing.T) {
	root := repoRoot(t)
	for file, upstream := range map[string]string{
		"10-kamailio-standard.sql": "standard-create.sql",
		"11-kamailio-presence.sql": "presence-create.sql",
	} {
		got := readFile(t, filepath.Join(root, "deploy", "compose", "mariadb", file))
		head, body, ok := strings.Cut(got, "USE kamailio;\n")
		if !ok {
			t.Errorf("%s: no USE kamailio line", file)
			continue
		}
		for _, l := range strings.Split(strings.TrimSpace(head), "\n") {
			if !strings.HasPrefix(l, "--") {
				t.Errorf("%s: unexpected line before USE: %q", file, l)
			}
		}
		want, err := os.ReadFile(filepath.Join("/usr/share/kamailio/mysql", upstream))
		if err != nil {
			t.Fatalf("Kamailio's schema (Debian package kamailio-mysql-modules): %v", err)
		}
		if body != string(want) {
			t.Errorf("%s differs from Kamailio's %s", file, upstream)
		}
	}
}

// -------------------------------------------------------------- Dockerfile

type dockerInstr struct {
	stage int
	cmd   string // upper case
	args  string
	line  int
}

// parseDockerfile splits a Dockerfile into instructions (continuation lines
// joined, comments dropped) and numbers the stages from 0.
func parseDockerfile(t *testing.T, path string) (instrs []dockerInstr, stages []string) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(readFile(t, path)))
	var cur strings.Builder
	stage, start, n := -1, 0, 0
	flush := func() {
		s := strings.TrimSpace(cur.String())
		cur.Reset()
		if s == "" {
			return
		}
		cmd, args, _ := strings.Cut(s, " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stage++
			f := strings.Fields(args)
			name := ""
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				name = f[2]
			}
			stages = append(stages, name)
		}
		instrs = append(instrs, dockerInstr{stage: stage, cmd: cmd, args: strings.TrimSpace(args), line: start})
	}
	for sc.Scan() {
		n++
		l := sc.Text()
		if cur.Len() == 0 {
			if strings.HasPrefix(strings.TrimSpace(l), "#") || strings.TrimSpace(l) == "" {
				continue
			}
			start = n
		}
		if strings.HasSuffix(l, `\`) {
			cur.WriteString(strings.TrimSuffix(l, `\`) + " ")
			continue
		}
		cur.WriteString(l)
		flush()
	}
	flush()
	known := []string{"FROM", "RUN", "COPY", "ADD", "ARG", "ENV", "WORKDIR", "USER", "EXPOSE", "ENTRYPOINT", "CMD", "LABEL", "HEALTHCHECK", "VOLUME", "STOPSIGNAL", "SHELL", "ONBUILD"}
	for _, in := range instrs {
		if !slices.Contains(known, in.cmd) {
			t.Errorf("%s:%d: unknown instruction %s", path, in.line, in.cmd)
		}
		if in.stage < 0 && in.cmd != "ARG" {
			t.Errorf("%s:%d: %s before the first FROM", path, in.line, in.cmd)
		}
	}
	return instrs, stages
}

func lastUser(instrs []dockerInstr, stage int) string {
	u := ""
	for _, in := range instrs {
		if in.stage == stage && in.cmd == "USER" {
			u = in.args
		}
	}
	return u
}

func isRoot(user string) bool {
	name, _, _ := strings.Cut(user, ":")
	return name == "" || name == "root" || name == "0"
}

// goBuildCommand returns the environment and arguments of the go build in
// the Dockerfile's build stage.
func goBuildCommand(t *testing.T, instrs []dockerInstr) (env, args []string) {
	t.Helper()
	for _, in := range instrs {
		if in.cmd != "RUN" || !strings.Contains(in.args, "go build") {
			continue
		}
		for _, part := range strings.Split(in.args, "&&") {
			if !strings.Contains(part, "go build") {
				continue
			}
			words := shellWords(t, part)
			for len(words) > 0 && strings.Contains(words[0], "=") {
				env = append(env, words[0])
				words = words[1:]
			}
			return env, words
		}
	}
	t.Fatal("Dockerfile: no RUN ... go build")
	return nil, nil
}

// shellWords splits a simple shell command (double quotes, no escapes).
func shellWords(t *testing.T, s string) []string {
	t.Helper()
	var words []string
	var w strings.Builder
	inQuote, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote, have = !inQuote, true
		case (r == ' ' || r == '\t') && !inQuote:
			if have {
				words = append(words, w.String())
				w.Reset()
				have = false
			}
		default:
			w.WriteRune(r)
			have = true
		}
	}
	if inQuote {
		t.Fatalf("unbalanced quotes in %q", s)
	}
	if have {
		words = append(words, w.String())
	}
	return words
}

func TestDockerfile(t *testing.T) {
	root := repoRoot(t)
	instrs, stages := parseDockerfile(t, filepath.Join(root, "Dockerfile"))
	if len(stages) < 2 {
		t.Fatalf("want a multi-stage build, got %d stage(s)", len(stages))
	}
	final := len(stages) - 1
	if u := lastUser(instrs, final); isRoot(u) {
		t.Errorf("final stage runs as %q: want a non-root USER", u)
	}
	env, args := goBuildCommand(t, instrs)
	if !slices.Contains(env, "CGO_ENABLED=0") {
		t.Errorf("go build without CGO_ENABLED=0: %q", env)
	}
	if args[len(args)-1] != "./cmd/puaside" {
		t.Errorf("go build %q does not build ./cmd/puaside", args)
	}
	out := ""
	if i := slices.Index(args, "-o"); i >= 0 && i+1 < len(args) {
		out = args[i+1]
	} else {
		t.Fatal("go build without -o")
	}
	// The binary is copied from the build stage and is the entrypoint.
	entry := ""
	copied := false
	for _, in := range instrs {
		if in.stage != final {
			continue
		}
		switch in.cmd {
		case "FROM":
			if !strings.Contains(in.args, "distroless/static") && !strings.HasPrefix(in.args, "scratch") {
				t.Errorf("final stage FROM %s: want distroless/static or scratch", in.args)
			}
		case "COPY":
			f := strings.Fields(in.args)
			if slices.Contains(f, "--from="+stages[0]) && slices.Contains(f, out) {
				copied = true
				entry = f[len(f)-1]
			}
		case "ENTRYPOINT":
			var ep []string
			if err := json.Unmarshal([]byte(in.args), &ep); err != nil || len(ep) == 0 {
				t.Fatalf("ENTRYPOINT %s: want exec form", in.args)
			}
			if entry != "" && ep[0] != entry {
				t.Errorf("ENTRYPOINT %s, but the binary is copied to %s", ep[0], entry)
			}
		}
	}
	if !copied {
		t.Errorf("final stage does not COPY --from=%s %s", stages[0], out)
	}

	// The compose healthcheck runs that binary; the ports puaside listens on
	// in the compose config are exposed.
	c := loadCompose(t, root)
	if hc := c.Services["puaside"].Healthcheck.Test; len(hc) < 2 || hc[1] != entry {
		t.Errorf("puaside healthcheck %q does not run %s", hc, entry)
	}
	cfg, err := config.Load(filepath.Join(root, "deploy", "compose", "puaside.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	exposed := map[string]bool{}
	for _, in := range instrs {
		if in.stage == final && in.cmd == "EXPOSE" {
			for _, p := range strings.Fields(in.args) {
				exposed[p] = true
			}
		}
	}
	var listeners []string
	for _, l := range slices.Concat(cfg.PUA.Listen, cfg.Ingest.ReplicateListen, cfg.Ingest.TraceListen, cfg.Ingest.HEPListen) {
		n, hp := listenHostPort(l)
		_, p, _ := net.SplitHostPort(hp)
		listeners = append(listeners, p+"/"+n)
	}
	_, hp, _ := net.SplitHostPort(cfg.HTTP.HTTPListen)
	listeners = append(listeners, hp+"/tcp")
	for _, l := range listeners {
		if !exposed[l] {
			t.Errorf("Dockerfile does not EXPOSE %s", l)
		}
	}

	// The Kamailio image of the stack.
	kinstrs, _ := parseDockerfile(t, filepath.Join(root, "deploy", "compose", "kamailio.Dockerfile"))
	if u := lastUser(kinstrs, 0); isRoot(u) {
		t.Errorf("kamailio.Dockerfile runs as %q: want a non-root USER", u)
	}
	for _, pkg := range []string{"kamailio-presence-modules", "kamailio-mysql-modules"} {
		found := false
		for _, in := range kinstrs {
			if in.cmd == "RUN" && strings.Contains(in.args, pkg) {
				found = true
			}
		}
		if !found {
			t.Errorf("kamailio.Dockerfile does not install %s", pkg)
		}
	}
}

// buildPuaside runs the Dockerfile's go build command into a temporary
// directory and returns the binary's path.
func buildPuaside(t *testing.T) string {
	t.Helper()
	root := repoRoot(t)
	instrs, _ := parseDockerfile(t, filepath.Join(root, "Dockerfile"))
	env, args := goBuildCommand(t, instrs)
	bin := filepath.Join(t.TempDir(), "puaside")
	if i := slices.Index(args, "-o"); i >= 0 {
		args[i+1] = bin
	}
	for i, a := range args {
		args[i] = strings.NewReplacer("${VERSION}", "deploy-test", "${REVISION}", "0123abc").Replace(a)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", strings.Join(env, " "), strings.Join(args, " "), err, out)
	}
	return bin
}

func TestDockerBuildCommandMakesStaticBinary(t *testing.T) {
	bin := buildPuaside(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary needs a dynamic loader: the distroless/static image cannot run it")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary links %v", libs)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "deploy-test (revision 0123abc, go") {
		t.Errorf("version: %v %s (the -X buildinfo.version/revision flags did not apply)", err, out)
	}
}

// ignoreMatch reports whether .dockerignore excludes path (slash-separated,
// relative to the context). It handles the forms used there: a path or
// directory, a glob, and a **/ prefix; negations are not supported.
func ignoreMatch(patterns []string, path string) bool {
	for _, p := range patterns {
		if rest, ok := strings.CutPrefix(p, "**/"); ok {
			if m, _ := filepath.Match(rest, filepath.Base(path)); m {
				return true
			}
			continue
		}
		if path == p || strings.HasPrefix(path, p+"/") {
			return true
		}
		if m, _ := filepath.Match(p, path); m {
			return true
		}
	}
	return false
}

func TestDockerignoreKeepsBuildInputs(t *testing.T) {
	root := repoRoot(t)
	var patterns []string
	for _, l := range strings.Split(readFile(t, filepath.Join(root, ".dockerignore")), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "!") {
			t.Fatalf(".dockerignore: negation %q is not handled by this test", l)
		}
		patterns = append(patterns, strings.TrimPrefix(l, "/"))
	}
	for _, p := range []string{".git", "puaside.db", "usrloc/usrloc.test"} {
		if !ignoreMatch(patterns, p) {
			t.Errorf(".dockerignore lets %s into the build context", p)
		}
	}
	cmd := exec.Command("go", "list", "-deps", "-json=Dir,GoFiles,EmbedFiles,Module", "./cmd/puaside")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	inputs := []string{"go.mod", "go.sum"}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			Dir        string
			GoFiles    []string
			EmbedFiles []string
			Module     *struct{ Path string }
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if p.Module == nil || p.Module.Path != "github.com/puaside/puaside" {
			continue
		}
		rel, err := filepath.Rel(root, p.Dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range slices.Concat(p.GoFiles, p.EmbedFiles) {
			inputs = append(inputs, filepath.ToSlash(filepath.Join(rel, f)))
		}
	}
	if len(inputs) < 10 {
		t.Fatalf("go list found only %v", inputs)
	}
	for _, f := range inputs {
		if ignoreMatch(patterns, f) {
			t.Errorf(".dockerignore excludes %s, which the build needs", f)
		}
	}
}

// ------------------------------------------------- production and systemd

func TestProductionConfig(t *testing.T) {
	root := repoRoot(t)
	text := readFile(t, filepath.Join(root, "deploy", "puaside.production.yaml"))
	cfg, err := config.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.PUA.Validate(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(cfg.DBURL, "mysql://") {
		t.Errorf("db_url %q: want MySQL", cfg.DBURL)
	}
	if cfg.LogFormat != "json" {
		t.Errorf("log_format %q: want json", cfg.LogFormat)
	}
	if cfg.HTTP.Token == "" {
		t.Error("http.token is empty")
	}
	if len(cfg.Ingest.TrustedSources) == 0 {
		t.Error("ingest.trusted_sources is empty")
	}
	// Example addresses only: documentation ranges (RFC 5737) or loopback.
	doc := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.0/24"),
		netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("127.0.0.0/8")}
	ips := regexp.MustCompile(`\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b`).FindAllString(text, -1)
	if len(ips) == 0 {
		t.Fatal("no addresses found")
	}
	for _, s := range ips {
		a, err := netip.ParseAddr(s)
		if err != nil {
			t.Errorf("%s: %v", s, err)
			continue
		}
		if !slices.ContainsFunc(doc, func(p netip.Prefix) bool { return p.Contains(a) }) {
			t.Errorf("%s is not a documentation or loopback address", s)
		}
	}
}

// unitFile parses a systemd unit into section → key → values.
func unitFile(t *testing.T, text string) map[string]map[string][]string {
	t.Helper()
	out := map[string]map[string][]string{}
	sec := ""
	for i, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";"):
		case strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]"):
			sec = l[1 : len(l)-1]
			out[sec] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok || sec == "" {
				t.Fatalf("unit line %d: %q", i+1, l)
			}
			out[sec][k] = append(out[sec][k], v)
		}
	}
	return out
}

func TestSystemdUnit(t *testing.T) {
	root := repoRoot(t)
	path := filepath.Join(root, "deploy", "systemd", "puaside.service")
	text := readFile(t, path)
	u := unitFile(t, text)
	svc := u["Service"]
	for k, want := range map[string]string{
		"ExecStart":       "/usr/local/bin/puaside run -config /etc/puaside/puaside.yaml",
		"Restart":         "on-failure",
		"NoNewPrivileges": "yes",
		"ProtectSystem":   "strict",
		"StateDirectory":  "puaside",
		"PrivateTmp":      "yes",
		"ProtectHome":     "yes",
		// readiness, reload and stop over the notify socket (notify.go)
		"Type":         "notify",
		"NotifyAccess": "main",
		// systemctl reload is SIGHUP (reload.go)
		"ExecReload": "/bin/kill -HUP $MAINPID",
		// a configuration error (exit 2, run and check alike) is not retried
		"RestartPreventExitStatus": "2",
		// the graceful stop is bounded below the unit's stop timeout
		"KillSignal":     "SIGTERM",
		"TimeoutStopSec": "30s",
	} {
		if got := svc[k]; len(got) != 1 || got[0] != want {
			t.Errorf("[Service] %s=%q, want %q", k, got, want)
		}
	}
	if svc["DynamicUser"] == nil && (svc["User"] == nil || isRoot(svc["User"][0])) {
		t.Error("[Service]: want DynamicUser=yes or a non-root User")
	}
	if u["Install"]["WantedBy"] == nil {
		t.Error("[Install] WantedBy missing")
	}

	// systemd's own parser: an unknown key or a bad value is reported on
	// stderr (the exit status stays 0), so any output is a failure.
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze not installed (Debian package systemd; scripts/test.sh installs it): %v", err)
	}
	bin := buildPuaside(t)
	dir := t.TempDir()
	unit := filepath.Join(dir, "puaside.service")
	if err := os.WriteFile(unit, []byte(strings.ReplaceAll(text, "/usr/local/bin/puaside", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", unit).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// --------------------------------------------------------- operator guide

// configKeys returns every key of the configuration file as a dotted path
// (log_level, pua.listen, bla.lines.aor, ...).
func configKeys(typ reflect.Type, prefix string, out map[string]bool) {
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		key := prefix + name
		out[key] = true
		ft := f.Type
		if ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft.PkgPath() != "time" {
			configKeys(ft, key+".", out)
		}
	}
}

// fencedBlocks returns the fenced code blocks of a Markdown text by info
// string. A fence may be indented (a block in a list item); the block's
// lines lose that indentation.
func fencedBlocks(md string) map[string][]string {
	out := map[string][]string{}
	lang, indent := "", ""
	var cur strings.Builder
	in := false
	for _, l := range strings.Split(md, "\n") {
		if t := strings.TrimLeft(l, " "); strings.HasPrefix(t, "```") {
			if in {
				out[lang] = append(out[lang], cur.String())
				cur.Reset()
				in = false
			} else {
				lang, in = strings.TrimSpace(strings.TrimPrefix(t, "```")), true
				indent = l[:len(l)-len(t)]
			}
			continue
		}
		if in {
			cur.WriteString(strings.TrimPrefix(l, indent) + "\n")
		}
	}
	return out
}

// proseSpans returns the inline code spans of a Markdown text outside its
// fenced blocks, whitespace collapsed, paragraph by paragraph (a span may
// wrap onto the next line).
func proseSpans(md string) []string {
	var prose []string
	in := false
	for _, l := range strings.Split(md, "\n") {
		if strings.HasPrefix(strings.TrimLeft(l, " "), "```") {
			in = !in
			prose = append(prose, "")
			continue
		}
		if in {
			l = ""
		}
		prose = append(prose, l)
	}
	span := regexp.MustCompile("`([^`]+)`")
	var out []string
	for _, p := range regexp.MustCompile(`\n\s*\n`).Split(strings.Join(prose, "\n"), -1) {
		for _, m := range span.FindAllStringSubmatch(p, -1) {
			out = append(out, strings.Join(strings.Fields(m[1]), " "))
		}
	}
	return out
}

func normLine(l string) string {
	return strings.Join(strings.Fields(strings.TrimLeft(strings.TrimSpace(l), "#")), " ")
}

func lineSet(t *testing.T, files ...string) map[string]bool {
	t.Helper()
	set := map[string]bool{}
	for _, f := range files {
		for _, l := range strings.Split(readFile(t, f), "\n") {
			set[normLine(l)] = true
		}
	}
	return set
}

// exercisedCommands returns the shell commands the guide may tell operators
// to run: each is run by TestStack or another test of this file.
func exercisedCommands() []string {
	return []string{
		"scripts/stack.sh start", "scripts/stack.sh stop", "scripts/stack.sh status", "scripts/stack.sh clean",
		"puaside run -config", "puaside migrate -config", "puaside version",
		"puaside check -config", "puaside config -config", "puaside ready",
		"puaside ls publications", "puaside ls subscriptions", "puaside ls registrations",
		"puaside ls dialogs", "puaside ls lines", "puaside ls flags",
		"puaside ls presentities", "puaside ls watchers",
		"puaside policy add", "puaside policy ls", "puaside policy rm",
		"puaside flag set", "puaside flag clear", "puaside line add", "puaside line rm", "puaside publish",
		"curl -fsS http://127.0.0.1:8080/metrics", "curl -fsS http://127.0.0.1:8080/readyz",
		"curl -fsS http://127.0.0.1:8080/healthz",
		"deploy/kamailio/presence-db.sh",
	}
}

func TestOperatorGuide(t *testing.T) {
	root := repoRoot(t)
	md := readFile(t, filepath.Join(root, "docs", "operator-guide.md"))
	blocks := fencedBlocks(md)

	// Every YAML example is a valid configuration.
	if len(blocks["yaml"]) == 0 {
		t.Error("no yaml examples")
	}
	for i, b := range blocks["yaml"] {
		if _, err := config.Parse([]byte(b)); err != nil {
			t.Errorf("yaml block %d: %v\n%s", i+1, err, b)
		}
	}

	// Every dotted configuration key named in the text exists.
	keys := map[string]bool{}
	configKeys(reflect.TypeOf(config.Config{}), "", keys)
	sections := []string{"features", "pua", "ingest", "usrloc", "dialoginfo", "bla", "pa", "http", "reconcile", "xmpp", "cluster"}
	for _, m := range regexp.MustCompile("`([a-z_]+(\\.[a-z_]+)+)`").FindAllStringSubmatch(md, -1) {
		sec, _, _ := strings.Cut(m[1], ".")
		if slices.Contains(sections, sec) && !keys[m[1]] {
			t.Errorf("the guide names the key %s, which does not exist", m[1])
		}
	}

	// Every metric named exists in the code.
	var src strings.Builder
	for _, f := range []string{"metrics/metrics.go", "metrics/outage.go", "metrics/cluster.go", "metrics/buildinfo.go", "mgmt/collector.go", "internal/daemon/gauges.go", "pa/metrics.go", "puaxmpp/conn.go"} {
		src.WriteString(readFile(t, filepath.Join(root, f)))
	}
	// Code blocks hold configuration, not metrics ("[puaside_hep]").
	var prose strings.Builder
	for i, part := range strings.Split(md, "```") {
		if i%2 == 0 {
			prose.WriteString(part)
		}
	}
	// Table names of the schema are not metrics.
	var tables strings.Builder
	sqls, err := filepath.Glob(filepath.Join(root, "schema", "sqlite", "*.sql"))
	if err != nil || len(sqls) == 0 {
		t.Fatalf("schema files: %v", err)
	}
	for _, f := range sqls {
		tables.WriteString(readFile(t, f))
	}
	metrics := 0
	for _, name := range regexp.MustCompile(`puaside_[a-z_]*[a-z]`).FindAllString(prose.String(), -1) {
		if name == "puaside_stack" || strings.Contains(tables.String(), "CREATE TABLE IF NOT EXISTS "+name+" ") {
			continue
		}
		metrics++
		base := name
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(name, suf); ok && strings.Contains(src.String(), `"`+b+`"`) {
				base = b
			}
		}
		if !strings.Contains(src.String(), `"`+base+`"`) {
			t.Errorf("the guide names the metric %s, which does not exist", name)
		}
	}
	if metrics == 0 {
		t.Error("the guide names no metric")
	}

	// Kamailio and OpenSIPS lines are copied from the tested files.
	kam := lineSet(t, filepath.Join(root, "deploy/kamailio/registrar.cfg"), filepath.Join(root, "deploy/kamailio/presence.cfg"))
	ops := lineSet(t, filepath.Join(root, "deploy/opensips/opensips-registrar.cfg"))
	for lang, set := range map[string]map[string]bool{"kamailio": kam, "opensips": ops} {
		if len(blocks[lang]) == 0 {
			t.Errorf("no %s blocks", lang)
		}
		for _, b := range blocks[lang] {
			for _, l := range strings.Split(b, "\n") {
				if n := normLine(l); n != "" && !set[n] {
					t.Errorf("%s block line %q is not in deploy/%s", lang, l, lang)
				}
			}
		}
	}

	// Shell steps are only commands the tests run.
	for _, b := range blocks["sh"] {
		for _, l := range strings.Split(b, "\n") {
			l = strings.TrimSpace(l)
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			f := strings.Fields(l)
			for len(f) > 0 && regexp.MustCompile(`^[A-Z_]+=`).MatchString(f[0]) {
				f = f[1:]
			}
			cmd := strings.Join(f, " ")
			if !slices.ContainsFunc(exercisedCommands(), func(p string) bool { return cmd == p || strings.HasPrefix(cmd, p+" ") }) {
				t.Errorf("sh step %q is not a command the tests exercise (put it in a text block marked as not exercised)", l)
			}
		}
	}

	// Subcommands named anywhere exist.
	subs := []string{"run", "migrate", "check", "config", "version", "help", "publish", "subscribe", "ls", "flag", "line", "ready"}
	for _, m := range regexp.MustCompile("`puaside ([a-z]+)").FindAllStringSubmatch(md, -1) {
		if !slices.Contains(subs, m[1]) {
			t.Errorf("the guide names `puaside %s`, which is not a subcommand", m[1])
		}
	}
}

// ------------------------------------------------------------ stack.sh

// stackEnv is one run of scripts/stack.sh on free ports and fresh databases.
type stackEnv struct {
	t        *testing.T
	root     string
	bin      string
	runDir   string
	env      []string
	ports    map[string]int
	puaDB    string
	kamDB    string
	mysqlDSN string // go-sql-driver form, no database
}

// freePorts returns n distinct loopback ports free for UDP and TCP.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ports, err := kamailiotest.FreePorts(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}

func newStack(t *testing.T, root, bin, mirror string) *stackEnv {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	s := &stackEnv{t: t, root: root, bin: bin, runDir: filepath.Join(t.TempDir(), "run"),
		puaDB: "puaside_stk_" + suffix, kamDB: "kamailio_stk_" + suffix, ports: map[string]int{}}
	names := []string{"REGISTRAR", "PRESENCE", "SIP", "REPLICATE", "TRACE", "HEP", "HTTP"}
	for i, p := range freePorts(t, len(names)) {
		s.ports[names[i]] = p
	}
	server := kamailiotest.MySQLServer() // user[:pass]@host:port
	cred, hostport, ok := strings.Cut(server, "@")
	if !ok {
		t.Fatalf("MySQL server %q: want user[:pass]@host:port", server)
	}
	user, pass, _ := strings.Cut(cred, ":")
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatal(err)
	}
	s.mysqlDSN = cred + "@tcp(" + hostport + ")/"
	s.env = append(os.Environ(),
		"STACK_RUN_DIR="+s.runDir, "STACK_MIRROR="+mirror, "STACK_ADDR=127.0.0.1",
		"STACK_MYSQL_HOST="+host, "STACK_MYSQL_PORT="+port, "STACK_MYSQL_USER="+user, "STACK_MYSQL_PASSWORD="+pass,
		"STACK_PUASIDE_DB="+s.puaDB, "STACK_KAMAILIO_DB="+s.kamDB, "STACK_WAIT=20", "PUASIDE_BIN="+bin)
	for _, n := range names {
		s.env = append(s.env, fmt.Sprintf("STACK_%s_PORT=%d", n, s.ports[n]))
	}
	return s
}

// script runs scripts/stack.sh with the stack's environment.
func (s *stackEnv) script(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.root, "scripts", "stack.sh"), args...)
	cmd.Env = s.env
	cmd.Dir = s.root
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// cli runs a puaside management subcommand against the stack's API.
func (s *stackEnv) cli(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args = append(args, "--api", s.api())
	out, err := exec.CommandContext(ctx, s.bin, args...).CombinedOutput()
	return string(out), err
}

func (s *stackEnv) api() string { return fmt.Sprintf("http://127.0.0.1:%d", s.ports["HTTP"]) }

func (s *stackEnv) mustCLI(args ...string) string {
	s.t.Helper()
	out, err := s.cli(args...)
	if err != nil {
		s.t.Fatalf("puaside %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (s *stackEnv) logs() string {
	var b strings.Builder
	for _, n := range []string{"presence", "puaside", "registrar"} {
		data, _ := os.ReadFile(filepath.Join(s.runDir, n+".log"))
		if len(data) > 8000 {
			data = data[len(data)-8000:]
		}
		fmt.Fprintf(&b, "----- %s.log\n%s\n", n, data)
	}
	return b.String()
}

func (s *stackEnv) pids() []int {
	var out []int
	for _, n := range []string{"presence", "puaside", "registrar"} {
		b, err := os.ReadFile(filepath.Join(s.runDir, n+".pid"))
		if err != nil {
			s.t.Fatalf("pid file of %s: %v", n, err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			s.t.Fatalf("pid file of %s: %v", n, err)
		}
		out = append(out, pid)
	}
	return out
}

func (s *stackEnv) databases(ctx context.Context) int {
	s.t.Helper()
	db, err := sql.Open("mysql", s.mysqlDSN+"?timeout=5s")
	if err != nil {
		s.t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name IN (?, ?)", s.puaDB, s.kamDB).Scan(&n); err != nil {
		s.t.Fatal(err)
	}
	return n
}

func (s *stackEnv) count(ctx context.Context, q string, args ...any) int {
	s.t.Helper()
	db, err := sql.Open("mysql", s.mysqlDSN+s.kamDB+"?timeout=5s")
	if err != nil {
		s.t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
		s.t.Fatal(err)
	}
	return n
}

// optionsOK sends an OPTIONS to 127.0.0.1:port over UDP and reports whether
// a 200 came back within a bounded number of tries.
func optionsOK(t *testing.T, port int) bool {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	dst := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	local := conn.LocalAddr().String()
	buf := make([]byte, 65535)
	for i := 0; i < 10; i++ {
		msg := fmt.Sprintf("OPTIONS sip:127.0.0.1:%d SIP/2.0\r\n"+
			"Via: SIP/2.0/UDP %s;branch=z9hG4bK-deploy-%d\r\n"+
			"From: <sip:deploy@127.0.0.1>;tag=deploy\r\n"+
			"To: <sip:127.0.0.1:%d>\r\n"+
			"Call-ID: deploy-%d-%s\r\n"+
			"CSeq: %d OPTIONS\r\n"+
			"Max-Forwards: 70\r\n"+
			"Content-Length: 0\r\n\r\n", port, local, i, port, port, local, i+1)
		if _, err := conn.WriteTo([]byte(msg), dst); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, _, err := conn.ReadFrom(buf)
		if err == nil && bytes.HasPrefix(buf[:n], []byte("SIP/2.0 200")) {
			return true
		}
	}
	return false
}

func httpGet(t *testing.T, u string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, string(b)
}

func TestStack(t *testing.T) {
	root := repoRoot(t)
	bin := buildPuaside(t)
	for _, mirror := range []string{"WITH_REPLICATE", "WITH_SIPTRACE", "WITH_HEP"} {
		t.Run(mirror, func(t *testing.T) { testStack(t, root, bin, mirror) })
	}
}

func testStack(t *testing.T, root, bin, mirror string) {
	s := newStack(t, root, bin, mirror)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cleaned := false
	t.Cleanup(func() {
		if !cleaned {
			if out, err := s.script("clean"); err != nil {
				t.Errorf("stack.sh clean: %v\n%s", err, out)
			}
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("stack logs:\n%s", s.logs())
		}
	})

	out, err := s.script("start")
	if err != nil {
		t.Fatalf("stack.sh start: %v\n%s", err, out)
	}
	if !strings.Contains(out, "running ("+mirror+")") || !strings.Contains(out, s.api()) {
		t.Errorf("start did not print the addresses:\n%s", out)
	}
	if out, err := s.script("start"); err == nil || !strings.Contains(out, "already runs") {
		t.Errorf("a second start must refuse: %v\n%s", err, out)
	}
	if out, err := s.script("status"); err != nil || strings.Count(out, ": running") != 3 {
		t.Errorf("status: %v\n%s", err, out)
	}

	// puaside answers its health checks and exposes metrics.
	for _, p := range []string{"/healthz", "/readyz"} {
		if code, body := httpGet(t, s.api()+p); code != http.StatusOK {
			t.Errorf("GET %s: %d %s", p, code, body)
		}
	}
	if code, body := httpGet(t, s.api()+"/metrics"); code != http.StatusOK || !strings.Contains(body, "puaside_sip_requests_in_flight") {
		t.Errorf("GET /metrics: %d\n%.500s", code, body)
	}
	// Both Kamailio instances answer SIP.
	for _, n := range []string{"REGISTRAR", "PRESENCE"} {
		if !optionsOK(t, s.ports[n]) {
			t.Errorf("%s on port %d does not answer OPTIONS", n, s.ports[n])
		}
	}

	// The compose healthcheck of puaside works against a running daemon.
	c := loadCompose(t, root)
	hc := slices.Clone(c.Services["puaside"].Healthcheck.Test[2:])
	for i, a := range hc {
		if strings.HasPrefix(a, "http://127.0.0.1:") {
			hc[i] = s.api()
		}
	}
	if out, err := exec.CommandContext(ctx, bin, hc...).CombinedOutput(); err != nil {
		t.Errorf("healthcheck %q: %v\n%s", hc, err, out)
	}

	// puaside publishes to the stack's presence server (which stores it in
	// its MariaDB database).
	pidf := `<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:deploy-api@example.com">` +
		`<tuple id="t1"><status><basic>open</basic></status></tuple></presence>`
	if out := s.mustCLI("publish", "--uri", "sip:deploy-api@example.com", "--event", "presence", "--body", pidf); !strings.HasPrefix(out, "200 ") {
		t.Errorf("publish: %s", out)
	}
	if n := s.count(ctx, "SELECT COUNT(*) FROM presentity WHERE username = ? AND domain = ?", "deploy-api", "example.com"); n != 1 {
		t.Errorf("presentity rows for deploy-api: %d, want 1", n)
	}

	// The management commands the operator guide shows.
	s.mustCLI("flag", "set", "sip:bob@example.com")
	if out := s.mustCLI("ls", "flags", "--json"); !strings.Contains(out, "sip:bob@example.com") {
		t.Errorf("ls flags after flag set:\n%s", out)
	}
	s.mustCLI("flag", "clear", "sip:bob@example.com")
	s.mustCLI("line", "add", "sip:100@example.com")
	if out := s.mustCLI("ls", "lines"); !strings.Contains(out, "sip:100@example.com") {
		t.Errorf("ls lines after line add:\n%s", out)
	}
	s.mustCLI("line", "rm", "sip:100@example.com")
	for _, l := range []string{"publications", "subscriptions", "registrations", "dialogs", "lines", "flags"} {
		s.mustCLI("ls", l)
	}

	// A phone registering at the registrar reaches puaside through the
	// chosen mirror.
	phone := sipphone.NewPhone(t, "alice", "example.com")
	resp, err := phone.Register(ctx, fmt.Sprintf("127.0.0.1:%d", s.ports["REGISTRAR"]), 300)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("REGISTER at the registrar: %v %v", resp, err)
	}
	seen := false
	for i := 0; i < 100 && !seen; i++ {
		out, err := s.cli("ls", "registrations", "--json")
		seen = err == nil && strings.Contains(out, "alice@example.com")
		if !seen {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if !seen {
		t.Errorf("puaside did not learn alice's registration through %s", mirror)
	}

	// Migrating the running database again changes nothing.
	if out, err := exec.CommandContext(ctx, bin, "migrate", "-config", filepath.Join(s.runDir, "puaside.yaml")).CombinedOutput(); err != nil || !strings.Contains(string(out), "schema up to date") {
		t.Errorf("migrate: %v\n%s", err, out)
	}

	// stop ends every process and frees the ports.
	pids := s.pids()
	if out, err := s.script("stop"); err != nil {
		t.Fatalf("stack.sh stop: %v\n%s", err, out)
	}
	for _, pid := range pids {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			t.Errorf("process %d still runs after stop", pid)
		}
	}
	if out, err := s.script("status"); err == nil || strings.Contains(out, ": running") {
		t.Errorf("status after stop: %v\n%s", err, out)
	}
	for _, n := range []string{"REGISTRAR", "PRESENCE", "HTTP"} {
		if conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.ports[n]), time.Second); err == nil {
			conn.Close()
			t.Errorf("port %d (%s) still accepts connections after stop", s.ports[n], n)
		}
	}
	if err := exec.CommandContext(ctx, bin, hc...).Run(); err == nil {
		t.Error("the healthcheck passes with puaside stopped")
	}

	// clean drops the databases.
	if out, err := s.script("clean"); err != nil {
		t.Fatalf("stack.sh clean: %v\n%s", err, out)
	}
	cleaned = true
	if n := s.databases(ctx); n != 0 {
		t.Errorf("%d of the stack's databases remain after clean", n)
	}
}
