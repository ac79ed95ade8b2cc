package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/puaside/puaside/config"
	"github.com/puaside/puaside/store"
)

// configFlag parses the flags of check and config: -config FILE (default
// $PUASIDE_CONFIG). done is true when the command must stop with code.
func configFlag(name string, args []string, stderr io.Writer) (path string, code int, done bool) {
	fs := flag.NewFlagSet("puaside "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	p := fs.String("config", os.Getenv("PUASIDE_CONFIG"), "YAML configuration `file` (empty: built-in defaults)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return "", exitOK, true
		}
		return "", exitUsage, true
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "puaside %s: unexpected argument %q\n", name, fs.Arg(0))
		return "", exitUsage, true
	}
	return *p, 0, false
}

// checkDBURL checks db_url's form as the store reads it, without connecting.
func checkDBURL(c config.Config) config.Errors {
	if _, _, err := store.ParseURL(c.DBURL); err != nil {
		return config.Errors{{Key: "db_url", Msg: strings.TrimPrefix(err.Error(), "store: db_url ")}}
	}
	return nil
}

// checkFile validates a configuration file fully, as `kamailio -c` does,
// without binding a port or touching the database.
func checkFile(path string) (config.Config, error) {
	var b []byte
	if path != "" {
		var err error
		if b, err = os.ReadFile(path); err != nil {
			return config.Config{}, err
		}
	}
	return config.Check(b, checkDBURL)
}

// printProblems writes one problem a line, prefixed with the file name.
func printProblems(w io.Writer, path string, err error) {
	if path == "" {
		path = "(defaults)"
	}
	var errs config.Errors
	if !errors.As(err, &errs) {
		fmt.Fprintf(w, "%s: %v\n", path, err)
		return
	}
	for _, p := range errs {
		fmt.Fprintf(w, "%s: %s\n", path, p)
	}
}

// runCheck is `puaside check`: exit 0 when the file is good, 2 when not,
// every problem on stderr with its key path and line.
func runCheck(args []string, stdout, stderr io.Writer) int {
	path, code, done := configFlag("check", args, stderr)
	if done {
		return code
	}
	if _, err := checkFile(path); err != nil {
		printProblems(stderr, path, err)
		return exitUsage
	}
	if path == "" {
		path = "built-in defaults"
	}
	fmt.Fprintf(stdout, "%s: configuration OK\n", path)
	return exitOK
}

// runConfig is `puaside config`: it prints the effective configuration
// (every key, defaults applied, secrets masked) as YAML.
func runConfig(args []string, stdout, stderr io.Writer) int {
	path, code, done := configFlag("config", args, stderr)
	if done {
		return code
	}
	c, err := checkFile(path)
	if err != nil {
		printProblems(stderr, path, err)
		return exitUsage
	}
	out, err := c.Masked().YAML()
	if err != nil {
		fmt.Fprintf(stderr, "puaside config: %v\n", err)
		return exitRemote
	}
	_, _ = stdout.Write(out)
	return exitOK
}
