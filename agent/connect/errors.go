package connect

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
)

// Kind says what went wrong, so that each failure gets its own advice.
type Kind int

const (
	KindOther Kind = iota
	// KindLocal: a problem on this side (a flag, a file) before any network.
	KindLocal
	// KindDNS: the broker's host name does not resolve.
	KindDNS
	// KindRefused: nothing listens on that host and port.
	KindRefused
	// KindTimeout: no answer in time (firewall, wrong port, broker down).
	KindTimeout
	// KindTLS: the TLS handshake failed (certificate not trusted, wrong
	// host name, expired, client certificate missing, not a TLS port).
	KindTLS
	// KindCredentials: the broker refused the user name or password.
	KindCredentials
	// KindPublishDenied: connected, but an ACL refused a publish.
	KindPublishDenied
	// KindSubscribeDenied: connected, but an ACL refused a subscription.
	KindSubscribeDenied
	// KindReadDenied: the subscription and publish were accepted but the
	// message never came back (an ACL that silently drops reads).
	KindReadDenied
	// KindProtocol: the broker does not speak MQTT 5 (or not MQTT at all).
	KindProtocol
)

var kindNames = map[Kind]string{
	KindOther: "error", KindLocal: "local problem", KindDNS: "DNS failure", KindRefused: "connection refused",
	KindTimeout: "timed out", KindTLS: "TLS verification failed", KindCredentials: "bad credentials",
	KindPublishDenied: "not authorized to publish", KindSubscribeDenied: "not authorized to subscribe",
	KindReadDenied: "not authorized to read", KindProtocol: "protocol error",
}

func (k Kind) String() string { return kindNames[k] }

// Error is a diagnosed failure: what kind, at which broker URL, the details
// and the cause.
type Error struct {
	Kind   Kind
	URL    string
	Detail string
	Err    error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Kind.String())
	if e.URL != "" {
		fmt.Fprintf(&b, " (%s)", e.URL)
	}
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the kind of the first *Error in err's tree (KindOther if none).
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindOther
}

// classify turns one connection attempt's error into a diagnosis.
func classify(rawURL string, err error) *Error {
	e := &Error{Kind: KindOther, URL: rawURL, Err: err}
	var ce *autopaho.ConnackError
	if errors.As(err, &ce) {
		e.Err = nil
		switch ce.ReasonCode {
		case 0x86, 0x87:
			// Mosquitto answers a wrong password with 0x87 (not authorized)
			// at CONNECT; both mean this login is not accepted.
			e.Kind = KindCredentials
			e.Detail = fmt.Sprintf("the broker refused the login (reason 0x%02x %s): check the user name and password", ce.ReasonCode, ce.Reason)
		case 0x84:
			e.Kind = KindProtocol
			e.Detail = "the broker does not support MQTT 5 (picockpit-client needs an MQTT 5 broker)"
		case 0x85:
			e.Kind = KindCredentials
			e.Detail = "the broker refused the client id"
		default:
			e.Detail = fmt.Sprintf("the broker refused the connection: reason 0x%02x %s", ce.ReasonCode, ce.Reason)
		}
		return e
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		e.Kind, e.Err = KindDNS, nil
		if dns.IsNotFound {
			e.Detail = fmt.Sprintf("host %q not found", dns.Name)
		} else {
			e.Detail = fmt.Sprintf("cannot resolve host %q: %s", dns.Name, dns.Err)
		}
		return e
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		e.Kind, e.Err = KindRefused, nil
		e.Detail = "nothing listens on that host and port (is the broker running, is the port right?)"
		return e
	}
	if tlsErr := describeTLS(err); tlsErr != "" {
		e.Kind, e.Detail = KindTLS, tlsErr
		return e
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		e.Kind = KindTimeout
		e.Detail = "no answer from the broker in time (firewall, wrong port, or the broker is down)"
		return e
	}
	if strings.Contains(err.Error(), "context deadline exceeded") {
		e.Kind = KindTimeout
		e.Detail = "no answer from the broker in time (wrong port, a TLS port reached over plain MQTT, or the broker is down)"
		return e
	}
	if errors.Is(err, syscall.ECONNRESET) || strings.Contains(err.Error(), "EOF") {
		e.Kind = KindProtocol
		e.Detail = "the broker closed the connection during the handshake (not an MQTT port, TLS required, or MQTT 5 unsupported)"
	}
	return e
}

// describeTLS explains a TLS failure with the certificate's subject and why
// it was not accepted; "" if err is not a TLS failure.
func describeTLS(err error) string {
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	var ve *tls.CertificateVerificationError
	var rh tls.RecordHeaderError
	var alert tls.AlertError
	// The certificate the server presented (its leaf), when known.
	var leaf *x509.Certificate
	if errors.As(err, &ve) && len(ve.UnverifiedCertificates) > 0 {
		leaf = ve.UnverifiedCertificates[0]
	}
	pick := func(c *x509.Certificate) *x509.Certificate {
		if leaf != nil {
			return leaf
		}
		return c
	}
	switch {
	case errors.As(err, &hn):
		return fmt.Sprintf("the server certificate (%s) is not valid for host %q (valid for: %s)",
			certName(pick(hn.Certificate)), hn.Host, strings.Join(certNames(hn.Certificate), ", "))
	case errors.As(err, &ua):
		issuer := ""
		if ua.Cert != nil {
			issuer = ua.Cert.Issuer.String()
		}
		return fmt.Sprintf("the server certificate (%s) is signed by an unknown authority (%s): give the broker's CA with --ca-file",
			certName(pick(ua.Cert)), issuer)
	case errors.As(err, &ci):
		why := map[x509.InvalidReason]string{x509.Expired: "expired or not yet valid", x509.NotAuthorizedToSign: "its issuer may not sign certificates",
			x509.IncompatibleUsage: "not meant for TLS servers", x509.CANotAuthorizedForThisName: "its CA may not sign this name"}[ci.Reason]
		if why == "" {
			why = ci.Error()
		}
		detail := fmt.Sprintf("the server certificate (%s) is invalid: %s", certName(pick(ci.Cert)), why)
		if ci.Reason == x509.Expired && ci.Cert != nil {
			detail += fmt.Sprintf(" (valid %s to %s, now %s)", ci.Cert.NotBefore.UTC().Format(time.RFC3339),
				ci.Cert.NotAfter.UTC().Format(time.RFC3339), time.Now().UTC().Format(time.RFC3339))
		}
		return detail
	case errors.As(err, &ve):
		name := "?"
		if len(ve.UnverifiedCertificates) > 0 {
			name = certName(ve.UnverifiedCertificates[0])
		}
		return fmt.Sprintf("the server certificate (%s) was not accepted: %v", name, ve.Err)
	case errors.As(err, &rh):
		return "the server does not speak TLS on this port (use mqtt:// or the broker's TLS port)"
	case errors.As(err, &alert):
		if strings.Contains(alert.Error(), "certificate required") || strings.Contains(alert.Error(), "bad certificate") {
			return "the broker wants a client certificate it trusts (--cert-file, --key-file): " + alert.Error()
		}
		return "the broker ended the TLS handshake: " + alert.Error()
	}
	if strings.Contains(err.Error(), "tls: ") {
		return err.Error()
	}
	return ""
}

func certName(c *x509.Certificate) string {
	if c == nil {
		return "no certificate"
	}
	return "subject " + c.Subject.String()
}

func certNames(c *x509.Certificate) []string {
	if c == nil {
		return nil
	}
	var out []string
	out = append(out, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	if len(out) == 0 {
		out = append(out, "no names")
	}
	return out
}
