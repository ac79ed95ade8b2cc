package siplisten

import (
	"crypto/tls"
	"fmt"
	"log/slog"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// Stack is a sipgo user agent with its server and client.
type Stack struct {
	UA     *sipgo.UserAgent
	Server *sipgo.Server
	Client *sipgo.Client
}

// NewStack creates the user agent ("puaside", hostname host, clientTLS for
// outgoing TLS), its server and its client, all logging through log.
// unhandled gets the responses that match no sipgo transaction (those of
// the caller's own client transactions, late retransmissions); nil drops
// them. On error nothing is left open.
func NewStack(log *slog.Logger, host string, clientTLS *tls.Config, unhandled func(*sip.Response)) (Stack, error) {
	if unhandled == nil {
		unhandled = func(*sip.Response) {}
	}
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent("puaside"),
		sipgo.WithUserAgentHostname(host),
		sipgo.WithUserAgenTLSConfig(clientTLS),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(log)),
		sipgo.WithUserAgentTransactionLayerOptions(
			sip.WithTransactionLayerLogger(log),
			sip.WithTransactionLayerUnhandledResponseHandler(unhandled),
		),
	)
	if err != nil {
		return Stack{}, fmt.Errorf("sip user agent: %w", err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(log))
	if err != nil {
		ua.Close()
		return Stack{}, fmt.Errorf("sip server: %w", err)
	}
	cl, err := sipgo.NewClient(ua, sipgo.WithClientLogger(log), sipgo.WithClientHostname(host))
	if err != nil {
		ua.Close()
		return Stack{}, fmt.Errorf("sip client: %w", err)
	}
	return Stack{UA: ua, Server: srv, Client: cl}, nil
}
