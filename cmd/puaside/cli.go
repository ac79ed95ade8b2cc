package main

// The management subcommands of the puaside binary: thin clients of the
// management API (package mgmt) of a running daemon.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/puaside/puaside/mgmt"
)

// Exit codes of the management subcommands.
const (
	exitOK     = 0 // done
	exitRemote = 1 // the API or the presence server refused, or the API is unreachable
	exitUsage  = 2 // bad command line
)

// Defaults of the global client flags.
const (
	defaultAPI = "http://127.0.0.1:8080"
	envAPI     = "PUASIDE_API"
	envToken   = "PUASIDE_TOKEN"
)

// cliCommands returns the management subcommands handled by runCLI, with a
// one-line summary each, for main's dispatch and help.
func cliCommands() map[string]string {
	return map[string]string{
		"publish":   "publish event state through the daemon and wait for the reply",
		"subscribe": "subscribe through the daemon (NOTIFY bodies: ls subscriptions)",
		"ls":        "list publications, subscriptions, registrations, dialogs, lines, flags, presentities, watchers, policy or xmpp",
		"flag":      "set, clear or list users' stored publishing flags",
		"line":      "add, remove or list shared lines (BLA)",
		"policy":    "add, remove or list the presence server's authorization rules",
		"ready":     "exit 0 when the daemon is ready (/readyz); for health checks",
	}
}

// cliEnv is what a subcommand may touch of the process.
type cliEnv struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

// runCLI runs the management subcommand name with its arguments and returns
// the exit code.
func runCLI(name string, args []string, stdout, stderr io.Writer) int {
	return runCLIEnv(cliEnv{stdin: os.Stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv}, name, args)
}

func runCLIEnv(env cliEnv, name string, args []string) int {
	c := &cli{env: env, name: name}
	switch name {
	case "publish":
		return c.publish(args)
	case "subscribe":
		return c.subscribe(args)
	case "ls":
		return c.ls(args)
	case "flag":
		return c.flag(args)
	case "line":
		return c.line(args)
	case "policy":
		return c.policy(args)
	case "ready":
		return c.ready(args)
	}
	fmt.Fprintf(env.stderr, "puaside: unknown command %q\n", name)
	return exitUsage
}

type cli struct {
	env    cliEnv
	name   string
	api    string
	token  string
	asJSON bool
	usage  func(w io.Writer)
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ", ") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// flags builds a flag set with the global client flags.
func (c *cli) flags(usage, help string) *flag.FlagSet {
	fs := flag.NewFlagSet("puaside "+c.name, flag.ContinueOnError)
	fs.SetOutput(c.env.stderr)
	api := c.env.getenv(envAPI)
	if api == "" {
		api = defaultAPI
	}
	fs.StringVar(&c.api, "api", api, "management API base URL (env "+envAPI+")")
	fs.StringVar(&c.token, "token", c.env.getenv(envToken), "bearer token of the API (env "+envToken+")")
	fs.BoolVar(&c.asJSON, "json", false, "print the API's JSON answer")
	c.usage = func(w io.Writer) {
		fmt.Fprintf(w, "usage: puaside %s %s\n\n%s\n\nflags:\n", c.name, usage, help)
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(c.env.stderr)
		fmt.Fprintf(w, "\nexit status: 0 done, 1 refused by the API or the presence server (or unreachable), 2 usage error\n")
	}
	// Parse errors print their message; the full help is for -h only.
	fs.Usage = func() {}
	return fs
}

// parse parses flags anywhere among the positional arguments and returns
// the positional ones; done reports -h or an error, with the exit code.
func (c *cli) parse(fs *flag.FlagSet, args []string) (pos []string, code int, done bool) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				c.usage(c.env.stdout)
				return nil, exitOK, true
			}
			fmt.Fprintf(c.env.stderr, "run 'puaside %s -h' for help\n", c.name)
			return nil, exitUsage, true
		}
		if fs.NArg() == 0 {
			return pos, 0, false
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func (c *cli) usageErr(fs *flag.FlagSet, format string, args ...any) int {
	fmt.Fprintf(c.env.stderr, "puaside %s: %s\n", c.name, fmt.Sprintf(format, args...))
	fmt.Fprintf(c.env.stderr, "run 'puaside %s -h' for help\n", c.name)
	return exitUsage
}

func (c *cli) client() *mgmt.Client { return mgmt.NewClient(c.api, c.token) }

func (c *cli) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 2*time.Minute)
}

// remoteErr reports a failed call and returns the exit code.
func (c *cli) remoteErr(err error) int {
	fmt.Fprintf(c.env.stderr, "puaside %s: %v\n", c.name, err)
	return exitRemote
}

func (c *cli) printJSON(v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // XML bodies as they are, not \u003c
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(c.env.stderr, "puaside %s: %v\n", c.name, err)
		return
	}
	_, _ = c.env.stdout.Write(buf.Bytes())
}

func (c *cli) printResult(r mgmt.SIPResult) {
	if c.asJSON {
		c.printJSON(r)
		return
	}
	fmt.Fprintf(c.env.stdout, "%d %s", r.Status, r.Reason)
	if r.ETag != "" {
		fmt.Fprintf(c.env.stdout, " etag=%s", r.ETag)
	}
	if r.Expires > 0 {
		fmt.Fprintf(c.env.stdout, " expires=%d", r.Expires)
	}
	fmt.Fprintln(c.env.stdout)
}

// readBody resolves --body: @file, - for stdin, or the text itself.
func (c *cli) readBody(spec string) (string, error) {
	switch {
	case spec == "-":
		b, err := io.ReadAll(io.LimitReader(c.env.stdin, 16<<20))
		if err != nil {
			return "", fmt.Errorf("read body from stdin: %w", err)
		}
		return string(b), nil
	case strings.HasPrefix(spec, "@"):
		b, err := os.ReadFile(spec[1:])
		if err != nil {
			return "", fmt.Errorf("read body: %w", err)
		}
		return string(b), nil
	}
	return spec, nil
}

func (c *cli) publish(args []string) int {
	fs := c.flags("--uri SIP-URI --event EVENT [flags]",
		"Publish event state for a presentity through the daemon's PUA engine and wait for the\n"+
			"presence server's final reply. --expires 0 removes the publication. Examples:\n"+
			"  puaside publish --uri sip:alice@example.com --event presence --body @alice.pidf\n"+
			"  puaside publish --uri sip:alice@example.com --event presence --expires 0")
	var p mgmt.PublishParams
	var headers stringList
	var body string
	fs.StringVar(&p.PresentityURI, "uri", "", "presentity URI (required)")
	fs.StringVar(&p.Event, "event", "", "event package, e.g. presence, dialog, dialog;sla (required)")
	expires := fs.Int("expires", -1, "expires in seconds; 0 removes; default the daemon's default_expires")
	fs.StringVar(&p.ContentType, "content-type", "", "content type (default: the event's)")
	fs.StringVar(&p.ID, "id", "", "publication id, to keep several publications of one presentity and event")
	fs.StringVar(&p.ETag, "etag", "", "current entity tag (checked); without --body, refreshes")
	fs.StringVar(&p.OutboundProxy, "outbound-proxy", "", "outbound proxy URI for this publication")
	fs.Var(&headers, "header", "extra header 'Name: value' (repeatable)")
	fs.StringVar(&body, "body", "", "body: text, @file, or - for stdin")
	fs.BoolVar(&p.KeepOnTimeout, "keep", false, "on a timeout keep the publication and let the daemon retry it (default: a timeout ends it)")
	pos, code, done := c.parse(fs, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		return c.usageErr(fs, "unexpected argument %q", pos[0])
	}
	if p.PresentityURI == "" {
		return c.usageErr(fs, "--uri is required")
	}
	if p.Event == "" {
		return c.usageErr(fs, "--event is required")
	}
	if *expires < -1 {
		return c.usageErr(fs, "--expires must not be negative")
	}
	if *expires >= 0 {
		p.Expires = expires
	}
	p.ExtraHeaders = headers
	if body != "" {
		b, err := c.readBody(body)
		if err != nil {
			return c.usageErr(fs, "%v", err)
		}
		p.Body = b
	}
	ctx, cancel := c.ctx()
	defer cancel()
	res, err := c.client().Publish(ctx, p)
	if err != nil {
		return c.remoteErr(err)
	}
	c.printResult(res)
	return exitOK
}

func (c *cli) subscribe(args []string) int {
	fs := c.flags("--uri SIP-URI --watcher SIP-URI --event EVENT [flags]",
		"Subscribe through the daemon's PUA engine and wait for the SUBSCRIBE's reply. The NOTIFY\n"+
			"bodies received are shown by 'puaside ls subscriptions --json'. --expires 0 unsubscribes.")
	var p mgmt.SubscribeParams
	fs.StringVar(&p.PresentityURI, "uri", "", "presentity URI (required)")
	fs.StringVar(&p.WatcherURI, "watcher", "", "watcher URI, the From of the SUBSCRIBE (required)")
	fs.StringVar(&p.Event, "event", "", "event package (required)")
	fs.StringVar(&p.ID, "id", "", "subscription id")
	expires := fs.Int("expires", -1, "expires in seconds; 0 unsubscribes; default the daemon's default_expires")
	pos, code, done := c.parse(fs, args)
	if done {
		return code
	}
	switch {
	case len(pos) > 0:
		return c.usageErr(fs, "unexpected argument %q", pos[0])
	case p.PresentityURI == "":
		return c.usageErr(fs, "--uri is required")
	case p.WatcherURI == "":
		return c.usageErr(fs, "--watcher is required")
	case p.Event == "":
		return c.usageErr(fs, "--event is required")
	case *expires < -1:
		return c.usageErr(fs, "--expires must not be negative")
	}
	if *expires >= 0 {
		p.Expires = expires
	}
	ctx, cancel := c.ctx()
	defer cancel()
	res, err := c.client().Subscribe(ctx, p)
	if err != nil {
		return c.remoteErr(err)
	}
	c.printResult(res)
	return exitOK
}

// columns are the table columns per listing; other listings show the keys
// of their first item.
func columns(kind string) []string {
	switch kind {
	case mgmt.ListPublications:
		return []string{"presentity_uri", "event", "id", "owner", "state", "etag", "last_status", "expires"}
	case mgmt.ListSubscriptions:
		return []string{"presentity_uri", "watcher_uri", "event", "id", "owner", "state", "last_status", "expires", "last_notify"}
	case mgmt.ListShards:
		return []string{"shard", "owner", "epoch", "left_ms", "mine"}
	case mgmt.ListPresentities:
		return []string{"presentity", "event", "id", "etag", "size", "expires"}
	case mgmt.ListWatchers:
		return []string{"presentity", "watcher", "event", "status", "contact", "cseq", "expires"}
	case mgmt.ListPolicy:
		return []string{"presentity", "watcher", "action", "source"}
	}
	return nil
}

func (c *cli) ls(args []string) int {
	fs := c.flags("publications|subscriptions|registrations|dialogs|lines|flags|presentities|watchers|policy|shards|xmpp [flags]",
		"List what the daemon holds, as an aligned table (or --json). xmpp lists the XMPP gateway's\n"+
			"publications (Jabber users' presence) and subscriptions (on Jabber users' behalf, and to their watcher lists);\n"+
			"presentities, watchers and policy list the embedded presence server's publications, subscriptions and\n"+
			"authorization rules.")
	q := url.Values{}
	filter := func(name, help string) {
		fs.Func(name, help, func(v string) error { q.Set(name, v); return nil })
	}
	filter("presentity", "only this presentity / AoR")
	filter("event", "only this event package")
	filter("state", "only this state (publications, subscriptions)")
	filter("watcher", "only this watcher (subscriptions)")
	filter("owner", "only this owner: usrloc, dialoginfo, bla, xmpp, api (publications, subscriptions)")
	for _, name := range []string{"limit", "offset"} {
		help := map[string]string{"limit": "at most this many items (default 100)", "offset": "skip this many items"}[name]
		fs.Func(name, help, func(v string) error {
			n, err := parseIntArg(name, v)
			if err != nil {
				return err
			}
			if n < 0 {
				return fmt.Errorf("--%s: must not be negative", name)
			}
			q.Set(name, strconv.Itoa(n))
			return nil
		})
	}
	pos, code, done := c.parse(fs, args)
	if done {
		return code
	}
	if len(pos) != 1 {
		return c.usageErr(fs, "name one listing: publications, subscriptions, registrations, dialogs, lines, flags, presentities, watchers, policy, shards or xmpp")
	}
	if pos[0] == "xmpp" {
		return c.listXMPP(fs, q)
	}
	return c.list(fs, pos[0], q)
}

// listXMPP lists the XMPP gateway's records: its publications, then its
// subscriptions (the engine's records of owner xmpp).
func (c *cli) listXMPP(fs *flag.FlagSet, q url.Values) int {
	q.Set("owner", "xmpp")
	if c.asJSON {
		ctx, cancel := c.ctx()
		defer cancel()
		out := map[string]any{}
		for _, kind := range []string{mgmt.ListPublications, mgmt.ListSubscriptions} {
			kq := url.Values{}
			for k, v := range q {
				if kind == mgmt.ListPublications && k == "watcher" {
					continue
				}
				kq[k] = v
			}
			l, err := c.client().List(ctx, kind, kq)
			if err != nil {
				return c.remoteErr(err)
			}
			out[kind] = l
		}
		c.printJSON(out)
		return exitOK
	}
	pq := url.Values{}
	for k, v := range q {
		if k != "watcher" {
			pq[k] = v
		}
	}
	if code := c.list(fs, mgmt.ListPublications, pq); code != exitOK {
		return code
	}
	fmt.Fprintln(c.env.stdout)
	return c.list(fs, mgmt.ListSubscriptions, q)
}

func (c *cli) list(fs *flag.FlagSet, kind string, q url.Values) int {
	switch kind {
	case mgmt.ListPublications, mgmt.ListSubscriptions, mgmt.ListRegistrations, mgmt.ListDialogs, mgmt.ListLines, mgmt.ListFlags,
		mgmt.ListPresentities, mgmt.ListWatchers, mgmt.ListPolicy, mgmt.ListShards:
	default:
		return c.usageErr(fs, "unknown listing %q", kind)
	}
	ctx, cancel := c.ctx()
	defer cancel()
	l, err := c.client().List(ctx, kind, q)
	if err != nil {
		return c.remoteErr(err)
	}
	if c.asJSON {
		c.printJSON(l)
		return exitOK
	}
	if err := writeTable(c.env.stdout, columns(kind), l.Items); err != nil {
		return c.remoteErr(err)
	}
	if len(l.Items) < l.Total {
		fmt.Fprintf(c.env.stdout, "(%d of %d shown; use --limit and --offset)\n", len(l.Items), l.Total)
	}
	return exitOK
}

// objectKeys returns the keys of a JSON object in document order.
func objectKeys(raw json.RawMessage) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("listing item is not a JSON object")
	}
	var keys []string
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("listing item: %w", err)
		}
		keys = append(keys, fmt.Sprint(t))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, fmt.Errorf("listing item: %w", err)
		}
	}
	return keys, nil
}

// cell renders one value for the table: times in RFC 3339 to the second
// ("-" for the zero time), a list as its cells joined by commas, an object
// naming a URI (a contact) as that URI.
func cell(v json.RawMessage) string {
	if len(v) == 0 || string(v) == "null" {
		return "-"
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		if s == "" {
			return "-"
		}
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			if t.IsZero() {
				return "-"
			}
			return t.Format(time.RFC3339)
		}
		return strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(s)
	}
	var list []json.RawMessage
	if json.Unmarshal(v, &list) == nil {
		parts := make([]string, 0, len(list))
		for _, it := range list {
			parts = append(parts, cell(it))
		}
		if len(parts) == 0 {
			return "-"
		}
		return strings.Join(parts, ",")
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(v, &obj) == nil {
		for k, raw := range obj {
			if strings.EqualFold(k, "uri") {
				return cell(raw)
			}
		}
	}
	var buf bytes.Buffer
	if json.Compact(&buf, v) == nil {
		return buf.String()
	}
	return string(v)
}

// writeTable prints items (JSON objects) as an aligned table.
func writeTable(w io.Writer, cols []string, items []json.RawMessage) error {
	if len(items) == 0 {
		_, err := fmt.Fprintln(w, "(none)")
		return err
	}
	if cols == nil {
		keys, err := objectKeys(items[0])
		if err != nil {
			return err
		}
		cols = keys
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := make([]string, len(cols))
	for i, c := range cols {
		head[i] = strings.ToUpper(c)
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, it := range items {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(it, &m); err != nil {
			return errors.New("listing item is not a JSON object")
		}
		row := make([]string, len(cols))
		for i, c := range cols {
			row[i] = cell(m[c])
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

func (c *cli) flag(args []string) int {
	fs := c.flags("set|clear AOR | ls [flags]",
		"Store a user's publishing flag in the database (set; --off stores it off), remove the\n"+
			"stored flag so the flag header and patterns decide again (clear), or list the stored flags.")
	off := fs.Bool("off", false, "with set: store the flag as off")
	pos, code, done := c.parse(fs, args)
	if done {
		return code
	}
	if len(pos) == 0 {
		return c.usageErr(fs, "name an action: set, clear or ls")
	}
	ctx, cancel := c.ctx()
	defer cancel()
	switch pos[0] {
	case "set", "clear":
		if len(pos) != 2 {
			return c.usageErr(fs, "%s takes one AOR", pos[0])
		}
		var err error
		if pos[0] == "set" {
			err = c.client().SetFlag(ctx, pos[1], !*off)
		} else {
			err = c.client().ClearFlag(ctx, pos[1])
		}
		if err != nil {
			return c.remoteErr(err)
		}
		fmt.Fprintf(c.env.stdout, "%s: flag %s\n", pos[1], map[bool]string{true: "set", false: "cleared"}[pos[0] == "set"])
		return exitOK
	case "ls":
		if len(pos) != 1 {
			return c.usageErr(fs, "ls takes no argument")
		}
		return c.list(fs, mgmt.ListFlags, url.Values{})
	}
	return c.usageErr(fs, "unknown action %q (set, clear, ls)", pos[0])
}

func (c *cli) line(args []string) int {
	fs := c.flags("add AOR [--member URI]... | rm AOR | ls [flags]",
		"Manage shared lines (BLA): add or replace a line and its member phones (without --member\n"+
			"they are learned from the line's registrations), remove one, or list them.")
	var members stringList
	fs.Var(&members, "member", "member phone URI (repeatable)")
	pos, code, done := c.parse(fs, args)
	if done {
		return code
	}
	if len(pos) == 0 {
		return c.usageErr(fs, "name an action: add, rm or ls")
	}
	ctx, cancel := c.ctx()
	defer cancel()
	switch pos[0] {
	case "add", "rm":
		if len(pos) != 2 {
			return c.usageErr(fs, "%s takes one AOR", pos[0])
		}
		if pos[0] == "rm" && len(members) > 0 {
			return c.usageErr(fs, "--member is for add")
		}
		var err error
		if pos[0] == "add" {
			err = c.client().AddLine(ctx, pos[1], members)
		} else {
			err = c.client().RemoveLine(ctx, pos[1])
		}
		if err != nil {
			return c.remoteErr(err)
		}
		fmt.Fprintf(c.env.stdout, "%s: line %s\n", pos[1], map[bool]string{true: "added", false: "removed"}[pos[0] == "add"])
		return exitOK
	case "ls":
		if len(pos) != 1 {
			return c.usageErr(fs, "ls takes no argument")
		}
		return c.list(fs, mgmt.ListLines, url.Values{})
	}
	return c.usageErr(fs, "unknown action %q (add, rm, ls)", pos[0])
}

func (c *cli) policy(args []string) int {
	fs := c.flags("add allow|pending|deny [--presentity P] [--watcher W] | rm [--presentity P] [--watcher W] | ls [flags]",
		"Manage the embedded presence server's authorization rules kept in the database: add (or replace)\n"+
			"the rule of a presentity and a watcher (each an AoR or a domain; absent is any), remove one, or\n"+
			"list every rule in the order they are checked (the database's, then pa.policy.rules).")
	var pres, watcher string
	fs.StringVar(&pres, "presentity", "", "the presentity: an AoR or a domain (absent: every presentity)")
	fs.StringVar(&watcher, "watcher", "", "the watcher: an AoR or a domain (absent: every watcher)")
	pos, code, done := c.parse(fs, args)
	if done {
		return code
	}
	if len(pos) == 0 {
		return c.usageErr(fs, "name an action: add, rm or ls")
	}
	ctx, cancel := c.ctx()
	defer cancel()
	name := func() string {
		p, w := pres, watcher
		if p == "" {
			p = "*"
		}
		if w == "" {
			w = "*"
		}
		return p + " <- " + w
	}
	switch pos[0] {
	case "add":
		if len(pos) != 2 {
			return c.usageErr(fs, "add takes one action: allow, pending or deny")
		}
		switch pos[1] {
		case "allow", "pending", "deny":
		default:
			return c.usageErr(fs, "unknown action %q (allow, pending, deny)", pos[1])
		}
		if err := c.client().PutPolicyRule(ctx, mgmt.PolicyRuleParams{Presentity: pres, Watcher: watcher, Action: pos[1]}); err != nil {
			return c.remoteErr(err)
		}
		fmt.Fprintf(c.env.stdout, "%s: %s\n", name(), pos[1])
		return exitOK
	case "rm":
		if len(pos) != 1 {
			return c.usageErr(fs, "rm takes no argument (name the rule with --presentity and --watcher)")
		}
		if err := c.client().DeletePolicyRule(ctx, pres, watcher); err != nil {
			return c.remoteErr(err)
		}
		fmt.Fprintf(c.env.stdout, "%s: removed\n", name())
		return exitOK
	case "ls":
		if len(pos) != 1 {
			return c.usageErr(fs, "ls takes no argument")
		}
		if watcher != "" {
			return c.usageErr(fs, "ls filters by --presentity only")
		}
		q := url.Values{}
		if pres != "" {
			q.Set("presentity", pres)
		}
		return c.list(fs, mgmt.ListPolicy, q)
	}
	return c.usageErr(fs, "unknown action %q (add, rm, ls)", pos[0])
}

// parseIntArg is strconv.Atoi with the flag's name in the error.
func parseIntArg(name, v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("--%s: not an integer: %q", name, v)
	}
	return n, nil
}
