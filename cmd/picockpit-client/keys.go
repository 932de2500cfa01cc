package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/picockpit/picockpit-client/modules/signature"
)

// keysMain runs the subcommands of signed requests: keygen and sign.
func keysMain(cmd string, args []string, stdout, stderr io.Writer) int {
	var err error
	switch cmd {
	case "keygen":
		err = keygen(args, stdout, stderr)
	case "sign":
		err = sign(args, stdout, stderr)
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	case err != nil:
		fmt.Fprintf(stderr, "picockpit-client %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

var errUsage = errors.New("usage")

// keygenCmd and signCmd parse their own flags (keys.go): the table passes
// their arguments through.
var keygenCmd = &subcommand{
	name:    "keygen",
	args:    "--name NAME [--out DIR] [--commands LIST] [--pins LIST]",
	summary: "make an Ed25519 key pair for signed requests",
	raw:     func(c *cli, args []string) int { return keysMain("keygen", args, c.stdout, c.stderr) },
}

var signCmd = &subcommand{
	name:    "sign",
	args:    "[flags]",
	summary: "sign a request: print a mosquitto_pub line or the user properties",
	raw:     func(c *cli, args []string) int { return keysMain("sign", args, c.stdout, c.stderr) },
}

// keygen writes NAME.pem (the private key, PKCS#8, mode 0600, kept by the
// signer) and NAME.json (the trusted key file for
// /etc/picockpit-client/trusted-keys.d/ on the Pi).
func keygen(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("picockpit-client keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "", "key name (a-z 0-9 _ . -), used in requests and the audit log")
	dir := fs.String("out", ".", "directory for NAME.pem (private) and NAME.json (public, for trusted-keys.d)")
	commands := fs.String("commands", "", "scope: comma-separated commands the key may sign (module/command, module/*, *)")
	pins := fs.String("pins", "", "scope: comma-separated GPIO pins the key may sign for (* for all)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: picockpit-client keygen --name NAME [--out DIR] [--commands LIST] [--pins LIST]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 || !signature.ValidKeyName(*name) {
		fs.Usage()
		return errUsage
	}
	var scope *signature.Scope
	if *commands != "" || *pins != "" {
		scope = &signature.Scope{Commands: splitList(*commands), Pins: splitList(*pins)}
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	pubFile, err := signature.EncodeKey(*name, pub, scope)
	if err != nil {
		return err
	}
	if _, err := signature.DecodeKey(pubFile); err != nil {
		return err // a scope entry that the agent would refuse
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	privPath := filepath.Join(*dir, *name+".pem")
	pubPath := filepath.Join(*dir, *name+".json")
	if err := writeNew(privPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	if err := writeNew(pubPath, pubFile, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "private key: %s (keep it with the signer; never on the Pi)\n", privPath)
	fmt.Fprintf(stdout, "trusted key: %s (install as root: install -m 644 %s /etc/picockpit-client/%s/)\n", pubPath, pubPath, "trusted-keys.d")
	return nil
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// readPrivateKey reads a PKCS#8 PEM Ed25519 private key (keygen's or
// `openssl genpkey -algorithm ed25519`).
func readPrivateKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: not a PEM PRIVATE KEY", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an Ed25519 key", path)
	}
	return priv, nil
}

// sign prints a signed request: a mosquitto_pub command line, or the user
// properties as JSON (for scripts and Node-RED's msg.userProperties).
func sign(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("picockpit-client sign", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keyPath := fs.String("key", "", "private key file (PEM, from keygen)")
	keyName := fs.String("key-name", "", "key name (default: the key file's name without .pem)")
	topic := fs.String("topic", "", "full request topic, e.g. picockpit/DEVICE/picontrol/run/system/reboot")
	payload := fs.String("payload", "{}", "request payload")
	resp := fs.String("response-topic", "", "full response topic (signed too)")
	corr := fs.String("correlation-data", "", "correlation data (signed too)")
	format := fs.String("format", "mosquitto_pub", "output: mosquitto_pub (a command line) or json (the user properties)")
	broker := fs.String("url", "", "broker for the mosquitto_pub line, mqtt://host:port (default: mosquitto_pub's)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: picockpit-client sign --key FILE --topic TOPIC [--payload JSON] [--response-topic T] [--correlation-data C] [--format mosquitto_pub|json] [--url mqtt://host:port]")
		fmt.Fprintf(stderr, "The signature is valid for %s (either way) and only once.\n", signature.DefaultWindow)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 || *keyPath == "" || *topic == "" || (*format != "mosquitto_pub" && *format != "json") {
		fs.Usage()
		return errUsage
	}
	if *keyName == "" {
		*keyName = strings.TrimSuffix(filepath.Base(*keyPath), ".pem")
	}
	if !signature.ValidKeyName(*keyName) {
		return fmt.Errorf("key name %q: use --key-name (a-z 0-9 _ . -)", *keyName)
	}
	priv, err := readPrivateKey(*keyPath)
	if err != nil {
		return err
	}
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	props := signature.Sign(priv, *keyName, signature.Message{Topic: *topic, Payload: []byte(*payload),
		CorrelationData: []byte(*corr), ResponseTopic: *resp}, time.Now(), base64.RawURLEncoding.EncodeToString(nonce))
	if *format == "json" {
		m := map[string]string{}
		for _, p := range props {
			m[p.Key] = p.Value
		}
		b, _ := json.MarshalIndent(m, "", "  ")
		fmt.Fprintln(stdout, string(b))
		return nil
	}
	line := []string{"mosquitto_pub", "-V", "mqttv5", "-q", "1"}
	if *broker != "" {
		u, err := url.Parse(*broker)
		if err != nil || u.Scheme != "mqtt" || u.Hostname() == "" {
			return fmt.Errorf("--url %q: want mqtt://host:port (add TLS options to the printed line yourself)", *broker)
		}
		line = append(line, "-h", u.Hostname())
		if u.Port() != "" {
			line = append(line, "-p", u.Port())
		}
	}
	line = append(line, "-t", *topic, "-m", *payload)
	if *resp != "" {
		line = append(line, "-D", "publish", "response-topic", *resp)
	}
	if *corr != "" {
		line = append(line, "-D", "publish", "correlation-data", *corr)
	}
	for _, p := range props {
		line = append(line, "-D", "publish", "user-property", p.Key, p.Value)
	}
	for i, w := range line {
		line[i] = shellQuote(w)
	}
	fmt.Fprintln(stdout, strings.Join(line, " "))
	return nil
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:=+@,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
