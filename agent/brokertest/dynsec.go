package brokertest

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// Dynsec is the administrator login of a broker started by MosquittoDynsec.
type Dynsec struct {
	AdminUser     string
	AdminPassword string
	// ConfigFile is the plugin's JSON state (clients, roles).
	ConfigFile string
}

// MosquittoDynsec starts Mosquitto with its dynamic security plugin
// (mosquitto_dynamic_security.so from the Debian package), initialised
// with mosquitto_ctrl to one administrator; anonymous clients are refused.
// opts.Users and opts.ACL must be empty: the plugin does the security.
func MosquittoDynsec(t testing.TB, opts Options) (*Broker, Dynsec) {
	t.Helper()
	if len(opts.Users) > 0 || opts.ACL != "" {
		t.Fatal("brokertest: MosquittoDynsec manages users and ACLs itself")
	}
	plugin := dynsecPlugin(t)
	ds := Dynsec{AdminUser: "admin", AdminPassword: "admin-secret", ConfigFile: filepath.Join(t.TempDir(), "dynamic-security.json")}
	if out, err := exec.Command("mosquitto_ctrl", "dynsec", "init", ds.ConfigFile, ds.AdminUser, ds.AdminPassword).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_ctrl dynsec init: %v: %s", err, out)
	}
	// Appended after the generated config: the later allow_anonymous wins.
	b := mosquitto(t, opts, "allow_anonymous false\nplugin "+plugin+"\nplugin_opt_config_file "+ds.ConfigFile+"\n")
	return b, ds
}

// dynsecPlugin finds mosquitto_dynamic_security.so (its directory depends
// on the architecture).
func dynsecPlugin(t testing.TB) string {
	t.Helper()
	for _, pat := range []string{"/usr/lib/*/mosquitto_dynamic_security.so", "/usr/lib/mosquitto_dynamic_security.so", "/usr/local/lib/mosquitto_dynamic_security.so"} {
		if m, _ := filepath.Glob(pat); len(m) > 0 {
			return m[0]
		}
	}
	t.Fatal("mosquitto_dynamic_security.so not found (it ships in Debian's mosquitto package)")
	return ""
}
