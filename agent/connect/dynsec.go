package connect

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/picockpit/picockpit-client/agent/contract"
)

// Mosquitto's dynamic security plugin is driven by JSON commands published
// to $CONTROL/dynamic-security/v1; the answers come on .../response.
const (
	dynsecTopic    = "$CONTROL/dynamic-security/v1"
	dynsecResponse = dynsecTopic + "/response"
)

// Dynsec is an administrator's connection to a broker that runs
// mosquitto_dynamic_security.so.
type Dynsec struct {
	s *session
}

// DialDynsec connects as the administrator and subscribes to the plugin's
// answers. The caller must Close it.
func DialDynsec(ctx context.Context, admin Target) (*Dynsec, error) {
	s, err := dial(ctx, admin)
	if err != nil {
		return nil, err
	}
	if err := s.subscribe(ctx, dynsecResponse, 0); err != nil {
		s.close()
		return nil, fmt.Errorf("the administrator login may not use the dynamic security plugin: %w", err)
	}
	return &Dynsec{s: s}, nil
}

// Close disconnects.
func (d *Dynsec) Close() { d.s.close() }

// DynsecError is an error the plugin answered to a command.
type DynsecError struct {
	Command string
	Message string
}

func (e *DynsecError) Error() string {
	return fmt.Sprintf("dynamic security %s: %s", e.Command, e.Message)
}

// Run sends one command (a JSON object with "command") and waits for its
// answer; it returns the answer's "data" or a *DynsecError.
func (d *Dynsec) Run(ctx context.Context, cmd map[string]any) (json.RawMessage, error) {
	name, _ := cmd["command"].(string)
	corr := make([]byte, 12)
	_, _ = rand.Read(corr)
	id := base64.RawURLEncoding.EncodeToString(corr)
	c := map[string]any{}
	for k, v := range cmd {
		c[k] = v
	}
	c["correlationData"] = id
	body, err := json.Marshal(map[string]any{"commands": []any{c}})
	if err != nil {
		return nil, err
	}
	if err := d.s.publish(ctx, &paho.Publish{Topic: dynsecTopic, Payload: body}); err != nil {
		return nil, fmt.Errorf("dynamic security %s: %w", name, err)
	}
	wait := time.NewTimer(d.s.t.timeout())
	defer wait.Stop()
	for {
		select {
		case p := <-d.s.in:
			if p.Topic != dynsecResponse {
				continue
			}
			var resp struct {
				Responses []struct {
					Command         string          `json:"command"`
					Error           string          `json:"error"`
					CorrelationData string          `json:"correlationData"`
					Data            json.RawMessage `json:"data"`
				} `json:"responses"`
			}
			if json.Unmarshal(p.Payload, &resp) != nil {
				continue
			}
			for _, r := range resp.Responses {
				if r.CorrelationData != id {
					continue
				}
				if r.Error != "" {
					return nil, &DynsecError{Command: name, Message: r.Error}
				}
				return r.Data, nil
			}
		case <-wait.C:
			return nil, &Error{Kind: KindTimeout, URL: d.s.url,
				Detail: fmt.Sprintf("no answer to the dynamic security command %s: does the broker run mosquitto_dynamic_security.so, and may this login use it?", name)}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Account is a device's provisioned broker account.
type Account struct {
	Username string `json:"username"`
	Role     string `json:"role"`
	Password []byte `json:"-"`
}

// AccountFor names the client and role of a device.
func AccountFor(prefix, device string) Account {
	// Device ids and prefixes are topic-safe; the role name keeps the prefix
	// so that two installations sharing a broker do not collide.
	return Account{Username: "picockpit-" + device, Role: "picockpit-device-" + strings.ReplaceAll(prefix, "/", "-") + "-" + device}
}

// RoleACLs are the dynamic security ACLs that grant a device exactly
// contract.DeviceRules (what `picockpit-client acl` prints), plus writing
// the extra topics given (Home Assistant discovery).
func RoleACLs(prefix, device string, extraWrite ...string) []map[string]any {
	var acls []map[string]any
	add := func(t, topic string) {
		acls = append(acls, map[string]any{"acltype": t, "topic": topic, "allow": true, "priority": 0})
	}
	for _, r := range contract.DeviceRules(prefix, device) {
		if r.Write {
			add("publishClientSend", r.Topic)
		}
		if r.Read {
			add("subscribePattern", r.Topic)
			add("publishClientReceive", r.Topic)
			add("unsubscribePattern", r.Topic)
		}
	}
	for _, t := range extraWrite {
		add("publishClientSend", t)
	}
	return acls
}

// NewPassword returns a random password (192 bits, URL-safe base64).
func NewPassword() []byte {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return []byte(base64.RawURLEncoding.EncodeToString(b))
}

// Provision creates (or replaces) the device's role and client with a new
// random password. An existing client of that name gets the new password
// and role: running connect again rotates the secret.
func (d *Dynsec) Provision(ctx context.Context, prefix, device string, extraWrite ...string) (Account, error) {
	acc := AccountFor(prefix, device)
	acc.Password = NewPassword()
	acls := RoleACLs(prefix, device, extraWrite...)
	_, err := d.Run(ctx, map[string]any{"command": "createRole", "rolename": acc.Role,
		"textname": "picockpit-client device " + device, "acls": acls})
	if isExists(err) {
		// Bring an existing role to exactly these ACLs.
		if _, err = d.Run(ctx, map[string]any{"command": "deleteRole", "rolename": acc.Role}); err == nil {
			_, err = d.Run(ctx, map[string]any{"command": "createRole", "rolename": acc.Role,
				"textname": "picockpit-client device " + device, "acls": acls})
		}
	}
	if err != nil {
		return acc, err
	}
	_, err = d.Run(ctx, map[string]any{"command": "createClient", "username": acc.Username, "password": string(acc.Password),
		"textname": "picockpit-client device " + device, "roles": []any{map[string]any{"rolename": acc.Role}}})
	if isExists(err) {
		_, err = d.Run(ctx, map[string]any{"command": "modifyClient", "username": acc.Username, "password": string(acc.Password),
			"roles": []any{map[string]any{"rolename": acc.Role}}})
	}
	return acc, err
}

// Remove deletes the device's client and role; absent ones are not an error.
func (d *Dynsec) Remove(ctx context.Context, acc Account) error {
	if _, err := d.Run(ctx, map[string]any{"command": "deleteClient", "username": acc.Username}); err != nil && !isNotFound(err) {
		return err
	}
	if acc.Role != "" {
		if _, err := d.Run(ctx, map[string]any{"command": "deleteRole", "rolename": acc.Role}); err != nil && !isNotFound(err) {
			return err
		}
	}
	return nil
}

// Exists reports whether a client of that name exists.
func (d *Dynsec) Exists(ctx context.Context, username string) (bool, error) {
	_, err := d.Run(ctx, map[string]any{"command": "getClient", "username": username})
	if isNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

func isExists(err error) bool {
	e, ok := err.(*DynsecError)
	return ok && strings.Contains(strings.ToLower(e.Message), "already exists")
}

func isNotFound(err error) bool {
	e, ok := err.(*DynsecError)
	return ok && (strings.Contains(strings.ToLower(e.Message), "not found") || strings.Contains(strings.ToLower(e.Message), "does not exist"))
}
