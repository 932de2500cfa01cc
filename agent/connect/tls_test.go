package connect

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/picockpit/picockpit-client/agent/contract"
)

// TestTLSDiagnosis: a server certificate for another host name and an
// expired one are each explained with the certificate's subject and why.
// The server is a TLS listener that never gets to MQTT: verification fails
// in the handshake.
func TestTLSDiagnosis(t *testing.T) {
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "diag CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	serve := func(cn string, names []string, ips []net.IP, notAfter time.Time) string {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn, Organization: []string{"Diag"}},
			DNSNames: names, IPAddresses: ips, NotBefore: notAfter.Add(-48 * time.Hour), NotAfter: notAfter,
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				_ = c.(*tls.Conn).Handshake()
				c.Close()
			}
		}()
		return "mqtts://" + l.Addr().String()
	}
	cases := []struct {
		name string
		url  string
		want []string
	}{
		{"host name", serve("broker.example", []string{"broker.example"}, nil, time.Now().Add(time.Hour)),
			[]string{"subject CN=broker.example,O=Diag", "not valid for host \"127.0.0.1\"", "valid for: broker.example"}},
		{"expired", serve("old.example", nil, []net.IP{net.ParseIP("127.0.0.1")}, time.Now().Add(-time.Hour)),
			[]string{"subject CN=old.example,O=Diag", "expired or not yet valid", "valid "}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Probe(context.Background(), Target{URLs: []string{c.url}, CAFile: caFile, ClientID: "t", Timeout: 15 * time.Second},
				contract.Root{Prefix: "p", Device: "d"})
			if KindOf(err) != KindTLS {
				t.Fatalf("kind %v: %v", KindOf(err), err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message lacks %q: %v", w, err)
				}
			}
		})
	}
}
