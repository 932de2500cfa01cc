package connect

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/picockpit/picockpit-client/agent"
	"github.com/picockpit/picockpit-client/agent/brokertest"
	"github.com/picockpit/picockpit-client/agent/contract"
)

// TestProvisionWithDynsec: connect --provision creates the device's client
// and role with Mosquitto's dynamic security plugin and stores only the
// device's login; the agent works under it; that login can neither read
// nor publish another device's topics; disconnect leaves no retained
// message of the device and removes its client and role.
func TestProvisionWithDynsec(t *testing.T) {
	ctx := context.Background()
	b, ds := brokertest.MosquittoDynsec(t, brokertest.Options{})
	admin := &Target{Username: ds.AdminUser, Password: []byte(ds.AdminPassword)}

	// A dashboard that reads everything (and may write test/# for markers).
	adm, err := DialDynsec(ctx, Target{URLs: []string{b.URL}, Username: ds.AdminUser, Password: []byte(ds.AdminPassword), ClientID: "test-admin"})
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	mustRun(t, adm, map[string]any{"command": "createRole", "rolename": "dashboard", "acls": []any{
		map[string]any{"acltype": "subscribePattern", "topic": "#", "allow": true},
		map[string]any{"acltype": "publishClientSend", "topic": "test/#", "allow": true}}})
	mustRun(t, adm, map[string]any{"command": "createClient", "username": "dashboard", "password": "dash",
		"roles": []any{map[string]any{"rolename": "dashboard"}}})

	o := setup(t)
	o.URLs, o.Admin = []string{b.URL}, admin
	res, err := Connect(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Account == nil || res.Account.Username != "picockpit-pi1" {
		t.Fatalf("account %+v", res.Account)
	}
	for _, cmd := range []map[string]any{{"command": "getClient", "username": "picockpit-pi1"}, {"command": "getRole", "rolename": res.Account.Role}} {
		mustRun(t, adm, cmd)
	}
	cfg, err := agent.LoadConfig(o.ConfigDir, nil, nil, nil)
	if err != nil || cfg.Broker.Username != "picockpit-pi1" || cfg.Broker.PasswordFile == "" {
		t.Fatalf("config: %v %+v", err, cfg.Broker)
	}
	devicePW, _ := os.ReadFile(cfg.Broker.PasswordFile)
	devicePW = []byte(strings.TrimSpace(string(devicePW)))
	// The administrator password is written nowhere.
	for _, dir := range []string{o.ConfigDir, o.StateDir} {
		_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if b, _ := os.ReadFile(p); err == nil && !fi.IsDir() && strings.Contains(string(b), ds.AdminPassword) {
				t.Errorf("%s holds the administrator password", p)
			}
			return nil
		})
	}

	// The device works under its account.
	dash := brokertest.Connect(t, b.URL, brokertest.ClientOptions{Username: "dashboard", Password: "dash"})
	dash.Subscribe("picockpit/#")
	stop := runAgentStoppable(t, o.ConfigDir)
	dash.WaitFor(15*time.Second, "pi1 online under its provisioned account", brokertest.Topic("picockpit/pi1/status", "online"))
	dash.WaitFor(15*time.Second, "pi1 info", brokertest.Topic("picockpit/pi1/info"))
	// It may also publish its Home Assistant discovery.
	dev := Target{URLs: []string{b.URL}, Username: "picockpit-pi1", Password: devicePW, ClientID: "test-pi1", Timeout: 15 * time.Second}
	s, err := dial(ctx, dev)
	if err != nil {
		t.Fatal(err)
	}
	ha := HADiscoveryTopic(DefaultHADiscoveryPrefix, "pi1")
	if err := s.publish(ctx, &paho.Publish{Topic: ha, Payload: []byte(`{"dev":{}}`), Retain: true}); err != nil {
		t.Fatal(err)
	}
	s.close()

	// A second provisioned device cannot read or write the first one's topics.
	o2 := setup(t)
	if err := os.WriteFile(filepath.Join(o2.ConfigDir, agent.ConfigFileName), []byte(`{"device":{"id":"pi2"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	o2.URLs, o2.Admin = []string{b.URL}, admin
	if _, err := Connect(ctx, o2); err != nil {
		t.Fatal(err)
	}
	pw2, _ := os.ReadFile(PlainPasswordPath(o2.ConfigDir))
	pi2 := Target{URLs: []string{b.URL}, Username: "picockpit-pi2", Password: []byte(strings.TrimSpace(string(pw2))), ClientID: "test-pi2", Timeout: 15 * time.Second}
	// Probe against pi1's tree: refused at the subscription.
	if _, err := Probe(ctx, pi2, contract.Root{Prefix: "picockpit", Device: "pi1"}); KindOf(err) != KindSubscribeDenied ||
		!strings.Contains(err.Error(), "not authorized to subscribe") {
		t.Errorf("pi2 probing pi1's tree: %v", err)
	}
	s2, err := dial(ctx, pi2)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"picockpit/pi1/#", "picockpit/pi1/status", "picockpit/+/status", "#", "picockpit/#", ha} {
		if err := s2.subscribe(ctx, f, 0); KindOf(err) != KindSubscribeDenied {
			t.Errorf("pi2 subscribing to %s: %v", f, err)
		}
	}
	for _, topic := range []string{"picockpit/pi1/status", "picockpit/pi1/gpio/17/set", "picockpit/pi1/picontrol/run/system/reboot", ha} {
		if err := s2.publish(ctx, &paho.Publish{Topic: topic, Payload: []byte("offline")}); KindOf(err) != KindPublishDenied {
			t.Errorf("pi2 publishing to %s: %v", topic, err)
		}
	}
	s2.close()

	// Disconnect (the service is stopped first, as the command does).
	stop()
	dres, err := Disconnect(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if dres.RemovedAccount != "picockpit-pi1" || !contains(dres.Cleared, "picockpit/pi1/status") || !contains(dres.Cleared, ha) {
		t.Errorf("disconnect result %+v", dres)
	}
	fresh := brokertest.Connect(t, b.URL, brokertest.ClientOptions{Username: "dashboard", Password: "dash"})
	fresh.Subscribe("picockpit/pi1/#", ha, "test/marker")
	fresh.Publish("test/marker", []byte("m"), brokertest.PublishOptions{QoS: 1})
	fresh.WaitFor(5*time.Second, "marker after the retained messages", brokertest.Topic("test/marker"))
	for _, m := range fresh.Messages() {
		if m.Retain && len(m.Payload) > 0 {
			t.Errorf("retained message left: %s %q", m.Topic, m.Payload)
		}
	}
	if ok, err := adm.Exists(ctx, "picockpit-pi1"); ok || err != nil {
		t.Errorf("client still exists (%v)", err)
	}
	if _, err := adm.Run(ctx, map[string]any{"command": "getRole", "rolename": res.Account.Role}); !isNotFound(err) {
		t.Errorf("role still exists: %v", err)
	}
	if _, err := Probe(ctx, dev, contract.Root{Prefix: "picockpit", Device: "pi1"}); KindOf(err) != KindCredentials {
		t.Errorf("the removed login still works: %v", err)
	}
	cfg, err = agent.LoadConfig(o.ConfigDir, nil, nil, nil)
	if err != nil || cfg.Broker.Username != "" || cfg.Broker.PasswordFile != "" {
		t.Errorf("config after disconnect: %v %+v", err, cfg.Broker)
	}
	for _, p := range []string{PlainPasswordPath(o.ConfigDir), filepath.Join(o.StateDir, provisionFile)} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still exists", p)
		}
	}
	// pi2 still works.
	if _, err := Probe(ctx, pi2, contract.Root{Prefix: "picockpit", Device: "pi2"}); err != nil {
		t.Errorf("pi2 after pi1's disconnect: %v", err)
	}
}

// TestProvisionBadAdminLogin: a wrong administrator password is reported as
// such and nothing is saved.
func TestProvisionBadAdminLogin(t *testing.T) {
	b, ds := brokertest.MosquittoDynsec(t, brokertest.Options{})
	o := setup(t)
	o.URLs, o.Admin = []string{b.URL}, &Target{Username: ds.AdminUser, Password: []byte("wrong")}
	_, err := Connect(context.Background(), o)
	if KindOf(err) != KindCredentials || !strings.Contains(err.Error(), "administrator login") {
		t.Errorf("wrong admin password: %v", err)
	}
	unchanged(t, o)
}

func mustRun(t *testing.T, d *Dynsec, cmd map[string]any) {
	t.Helper()
	if _, err := d.Run(context.Background(), cmd); err != nil {
		t.Fatalf("%v: %v", cmd["command"], err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// runAgentStoppable runs an agent from configDir; the returned func stops it.
func runAgentStoppable(t *testing.T, configDir string) func() {
	t.Helper()
	a, res, err := agent.New(agent.Options{ConfigDir: configDir, StateDir: t.TempDir(), Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, res.Modules, res.Problems) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return stop
}
