package config

import (
	"fmt"
	"net"
	"strings"
)

// SyslogTarget splits log_syslog into the network and address of
// log/syslog.Dial: "local" gives "", "" (the local socket).
func SyslogTarget(v string) (network, addr string, err error) {
	if v == "local" {
		return "", "", nil
	}
	network, addr, ok := strings.Cut(v, "://")
	if !ok || (network != "udp" && network != "tcp") {
		return "", "", fmt.Errorf("%q: must be local, udp://host:port or tcp://host:port", v)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", "", fmt.Errorf("%q: %v", v, err)
	}
	return network, addr, nil
}

func checkSyslog(v string) error {
	if v == "" {
		return nil
	}
	_, _, err := SyslogTarget(v)
	return err
}
