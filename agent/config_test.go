package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeCfg(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ConfigFileName), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLoadConfig(t *testing.T) {
	sections := []string{"stats", "gpio"}
	for _, tc := range []struct {
		name    string
		file    string // "" = no file
		env     []string
		sets    []string
		wantErr []string // substrings of the error
		check   func(t *testing.T, c Config)
	}{
		{name: "defaults without a file", check: func(t *testing.T, c Config) {
			if c.Broker.URL[0] != "mqtt://127.0.0.1:1883" || c.Topics.Prefix != "picockpit" || c.Host.Root != "/" || c.Broker.Keepalive != 30*time.Second {
				t.Errorf("defaults: %+v", c)
			}
		}},
		{name: "full file", file: `{"broker":{"url":["mqtts://a:8883","wss://b/mqtt"],"username":"pi","password":"x","keepalive":"45s"},
			"topics":{"prefix":"home/pis"},"device":{"id":"kitchen"},"stats":{"interval":"2s"}}`,
			check: func(t *testing.T, c Config) {
				if len(c.Broker.URL) != 2 || c.Broker.URL[1] != "wss://b/mqtt" || c.Broker.Keepalive != 45*time.Second || c.Topics.Prefix != "home/pis" || c.Device.ID != "kitchen" {
					t.Errorf("got %+v", c)
				}
				if string(c.Sections["stats"]) != `{"interval":"2s"}` {
					t.Errorf("stats section = %s", c.Sections["stats"])
				}
			}},
		{name: "single url string", file: `{"broker":{"url":"mqtt://x:1883"}}`, check: func(t *testing.T, c Config) {
			if len(c.Broker.URL) != 1 || c.Broker.URL[0] != "mqtt://x:1883" {
				t.Errorf("url = %v", c.Broker.URL)
			}
		}},
		{name: "misspelled key", file: `{"broker":{"usrname":"pi"}}`, wantErr: []string{ConfigFileName, "broker.usrname", `did you mean "broker.username"`}},
		{name: "unknown section", file: `{"stat":{}}`, wantErr: []string{ConfigFileName, "stat: unknown key", `did you mean "stats"`}},
		{name: "bad json", file: "{\n  \"broker\": }", wantErr: []string{ConfigFileName, "invalid JSON at line 2, column 13"}},
		{name: "bad keepalive and bad log level", file: `{"broker":{"keepalive":"0s"},"log":{"level":"loud"}}`,
			wantErr: []string{ConfigFileName + ": broker.keepalive: 0s out of range", ConfigFileName + `: log.level: "loud" is not one of`}},
		{name: "two misspelled keys", file: `{"broker":{"usrname":"pi","pasword":"x"}}`,
			wantErr: []string{`broker.usrname: unknown key (did you mean "broker.username"?)`, `broker.pasword: unknown key (did you mean "broker.password"?)`}},
		{name: "number for a string", file: `{"topics":{"prefix":5}}`, wantErr: []string{ConfigFileName + ": topics.prefix: want a string, got the number 5"}},
		{name: "number for a duration", file: `{"broker":{"keepalive":30}}`, wantErr: []string{`broker.keepalive: want a duration string such as "30s", got the number 30 (write "30s" for seconds)`}},
		{name: "object for a string", file: `{"log":{"level":{}}}`, wantErr: []string{"log.level: want a string, got an object"}},
		{name: "dotted key in the file", file: `{"broker.url":"mqtt://x"}`, wantErr: []string{"broker.url: unknown key"}},
		{name: "bad value from the environment", file: `{"log":{"level":"info"}}`, env: []string{"PICOCKPIT_LOG_LEVEL=loud"},
			wantErr: []string{`environment variable PICOCKPIT_LOG_LEVEL: log.level: "loud" is not one of`}},
		{name: "bad value from --set", sets: []string{"broker.keepalive=0s", "topics.prefix=a/#"},
			wantErr: []string{"--set broker.keepalive: broker.keepalive: 0s out of range", "--set topics.prefix: topics.prefix:"}},
		{name: "secret on the command line", sets: []string{"broker.password=hunter2"},
			wantErr: []string{"--set broker.password: refused", "broker.password_file", "PICOCKPIT_BROKER_PASSWORD"}},
		{name: "bad scheme", file: `{"broker":{"url":"http://x"}}`, wantErr: []string{"broker.url[0]", "scheme"}},
		{name: "relative ca", file: `{"broker":{"ca_file":"ca.pem"}}`, wantErr: []string{"broker.ca_file", "absolute"}},
		{name: "wildcard prefix", file: `{"topics":{"prefix":"a/+"}}`, wantErr: []string{"topics.prefix"}},
		{name: "device id with slash", file: `{"device":{"id":"a/b"}}`, wantErr: []string{"device.id"}},
		{name: "zero session expiry", file: `{"broker":{"session_expiry":"0s"}}`, wantErr: []string{"broker.session_expiry"}},
		{name: "env overrides file", file: `{"broker":{"url":"mqtt://file:1883","username":"file"}}`,
			env: []string{"PICOCKPIT_BROKER_USERNAME=env", "PICOCKPIT_BROKER_URL=mqtt://a:1,mqtts://b:2", "PATH=/bin"},
			check: func(t *testing.T, c Config) {
				if c.Broker.Username != "env" || len(c.Broker.URL) != 2 || c.Broker.URL[1] != "mqtts://b:2" {
					t.Errorf("got %+v", c.Broker)
				}
			}},
		{name: "env with underscore key", env: []string{"PICOCKPIT_BROKER_CA_FILE=/etc/ca.pem"}, check: func(t *testing.T, c Config) {
			if c.Broker.CAFile != "/etc/ca.pem" {
				t.Errorf("ca_file = %q", c.Broker.CAFile)
			}
		}},
		{name: "unknown env var", env: []string{"PICOCKPIT_BROKER_USRNAME=x"}, wantErr: []string{"PICOCKPIT_BROKER_USRNAME", "unknown"}},
		{name: "bad env duration", env: []string{"PICOCKPIT_BROKER_KEEPALIVE=soon"}, wantErr: []string{"PICOCKPIT_BROKER_KEEPALIVE", "soon"}},
		{name: "flag beats env", env: []string{"PICOCKPIT_TOPICS_PREFIX=env"}, sets: []string{"topics.prefix=flag"}, check: func(t *testing.T, c Config) {
			if c.Topics.Prefix != "flag" {
				t.Errorf("prefix = %q", c.Topics.Prefix)
			}
		}},
		{name: "unknown flag key", sets: []string{"broker.hostname=x"}, wantErr: []string{"--set", "broker.hostname"}},
		{name: "flag without value", sets: []string{"broker.url"}, wantErr: []string{"key=value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.file != "" {
				dir = writeCfg(t, tc.file)
			}
			c, err := LoadConfig(dir, tc.env, tc.sets, sections)
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("want error containing %q, got none", tc.wantErr)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestLoadConfigCountsEveryProblem(t *testing.T) {
	dir := writeCfg(t, `{"broker":{"keepalive":"0s","usrname":"a","pasword":"b"},"log":{"level":"loud"},"topics":{"prefix":5}}`)
	_, err := LoadConfig(dir, []string{"PICOCKPIT_BROKER_SESSION_EXPIRY=0s"}, []string{"broker.password=x"}, nil)
	var errs ConfigErrors
	if !errors.As(err, &errs) || len(errs) != 7 {
		t.Fatalf("want 7 problems, got %d:\n%v", len(errs), err)
	}
}

func TestLoadConfigMissingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nope")
	_, err := LoadConfig(dir, nil, nil, nil)
	if err == nil || !strings.Contains(err.Error(), dir+": the config directory does not exist") {
		t.Fatalf("error %v", err)
	}
}

func TestShippedConfigLoads(t *testing.T) {
	c, err := LoadConfig("../etc/picockpit-client", nil, nil, []string{"picontrol", "pistats", "stats", "gpio"})
	if err != nil {
		t.Fatalf("shipped config: %v", err)
	}
	if c.File == "" {
		t.Fatal("shipped config file not found")
	}
}
