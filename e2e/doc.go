// Package e2e holds puaside's end-to-end tests: a real Kamailio presence
// server and registrar (Debian's kamailio packages, started with the
// project's deploy/kamailio configs on free loopback ports), SIP phones and
// watchers over loopback, and puaside itself run in-process by package
// daemon with its listeners on free ports. The package has no non-test code
// besides this comment.
package e2e
