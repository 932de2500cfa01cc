package agent

import (
	"fmt"
	"path/filepath"
	"sort"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/picockpit/picockpit-client/modules"
	"github.com/picockpit/picockpit-client/modules/signature"
)

// TrustedKeysDir holds the public keys of signed requests, one JSON file
// per key, under the same StrictModes rules as module files.
const TrustedKeysDir = "trusted-keys.d"

// replayCache remembers the nonces of signed requests for the whole process,
// across reloads (a reload must not make a captured request valid again),
// and refuses requests signed before the process started (a restart must
// not either).
var replayCache = newReplayCache()

func newReplayCache() *signature.ReplayCache {
	c := signature.NewReplayCache(0)
	c.Since = time.Now()
	return c
}

// trustedKeys reads <configDir>/trusted-keys.d/*.json. A bad or untrusted
// file is a problem and its key is not trusted; the others are.
func trustedKeys(configDir string) (*signature.Verifier, []modules.Problem) {
	paths, _ := filepath.Glob(filepath.Join(configDir, TrustedKeysDir, "*.json"))
	sort.Strings(paths)
	var keys []signature.Key
	var problems []modules.Problem
	byName := map[string]string{}
	for _, p := range paths {
		data, _, err := ReadTrusted(configDir, p)
		if err != nil {
			problems = append(problems, modules.Problem{File: p, Err: refusal(p, err)})
			continue
		}
		k, err := signature.DecodeKey(data)
		if err != nil {
			problems = append(problems, modules.Problem{File: p, Err: err})
			continue
		}
		if other, dup := byName[k.Name]; dup {
			problems = append(problems, modules.Problem{File: p, Field: "name", Err: fmt.Errorf("key name %q is already used by %s", k.Name, other)})
			continue
		}
		byName[k.Name] = p
		keys = append(keys, k)
	}
	return signature.NewVerifier(keys, replayCache, 0, nil), problems
}

// userProperties copies a message's user properties for modules.Request.
func userProperties(up paho.UserProperties) []signature.Property {
	if len(up) == 0 {
		return nil
	}
	out := make([]signature.Property, len(up))
	for i, p := range up {
		out[i] = signature.Property{Key: p.Key, Value: p.Value}
	}
	return out
}
