// Package deploy holds the deployment files of puaside and the test that
// keeps them consistent with the code: the Kamailio and OpenSIPS snippets
// (deploy/kamailio, deploy/opensips), the compose stack (docker-compose.yml
// and deploy/compose at the repository root), the systemd unit, the
// production configuration example, and scripts/stack.sh, which runs the
// same stack without Docker. A registrar mirrors traffic to puaside's
// ingest; the trackers (usrloc, dialoginfo, bla) feed the pua engine, which
// publishes to the presence server and keeps its state in SQL.
//
// The package has no code: its test (deploy_test.go) parses and checks the
// files, and starts scripts/stack.sh for real.
package deploy
