package worker

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"paddock/listener"
)

// What the master writes into a worker's environment (environ) is what
// the worker reads back (parseChildEnv), every field of the contract.
func TestChildEnvRoundTrip(t *testing.T) {
	specs, err := listener.ParseList([]string{"127.0.0.1:8080", "unix:/run/app.sock", "[::1]:9000"})
	if err != nil {
		t.Fatal(err)
	}
	s := testSettings(t, map[string]string{"timeout": "12", "workers": "3", "certfile": "/etc/c.pem", "keyfile": "/etc/k.pem"})
	for _, configFD := range []int{-1, 9} {
		want := &childEnv{id: 7, generation: 4, maxRequests: 1000, specs: specs, channelFD: 6, configFD: configFD,
			config: "/etc/paste.ini", app: "api", server: "main", settings: s, logJSON: true}
		vars, err := want.environ()
		if err != nil {
			t.Fatal(err)
		}
		env := make(map[string]string)
		for _, kv := range vars {
			k, v, _ := strings.Cut(kv, "=")
			if !strings.HasPrefix(k, "PADDOCK_WORKER_") {
				t.Errorf("variable %s is outside the contract's PADDOCK_WORKER_ prefix", k)
			}
			env[k] = v
		}
		got, err := parseChildEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		if err != nil {
			t.Fatal(err)
		}
		gs, _ := json.Marshal(got.settings)
		ws, _ := json.Marshal(want.settings)
		if string(gs) != string(ws) {
			t.Errorf("settings came back as %s, want %s", gs, ws)
		}
		got.settings, want.settings = nil, nil
		if !reflect.DeepEqual(got, want) {
			t.Errorf("parseChildEnv(environ()) = %+v, want %+v", got, want)
		}
	}
	// A contract with a variable missing is refused, naming it.
	if _, err := parseChildEnv(func(k string) (string, bool) { return "", false }); err == nil || !strings.Contains(err.Error(), EnvWorker) {
		t.Errorf("empty environment: %v, want an error naming %s", err, EnvWorker)
	}
}
