package image

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"

	"oras.land/oras-go/v2/registry/remote/auth"
)

func TestCredentials(t *testing.T) {
	t.Parallel()
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	secret := []byte(`{"auths":{"registry.example.com":{"auth":"` + b64("alice:s3cret") + `"},"https://index.docker.io/v1/":{"username":"bob","password":"pw"}}}`)
	file := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(file, []byte(`{"auths":{"other.example.com:5000":{"auth":"`+b64("carol:x")+`"},"registry.example.com":{"auth":"`+b64("ignored:y")+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		auth Auth
		host string
		want auth.Credential
	}{
		{"secret", Auth{DockerConfigJSON: [][]byte{secret}, DockerConfigFiles: []string{file}}, "registry.example.com", auth.Credential{Username: "alice", Password: "s3cret"}},
		{"docker hub", Auth{DockerConfigJSON: [][]byte{secret}}, "registry-1.docker.io", auth.Credential{Username: "bob", Password: "pw"}},
		{"file", Auth{DockerConfigJSON: [][]byte{secret}, DockerConfigFiles: []string{file}}, "other.example.com:5000", auth.Credential{Username: "carol", Password: "x"}},
		{"explicit wins", Auth{Username: "u", Password: "p", DockerConfigJSON: [][]byte{secret}}, "registry.example.com", auth.Credential{Username: "u", Password: "p"}},
		{"anonymous", Auth{DockerConfigJSON: [][]byte{secret}}, "unknown.example.com", auth.EmptyCredential},
	}
	for _, tc := range tests {
		cred, err := tc.auth.credential()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got, err := cred(context.Background(), tc.host)
		if err != nil || got != tc.want {
			t.Errorf("%s: got %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
	if _, err := (Auth{DockerConfigJSON: [][]byte{[]byte("{")}}).credential(); err == nil {
		t.Error("malformed docker config accepted")
	}
}

func TestPlainHTTP(t *testing.T) {
	t.Parallel()
	rm := Remote{Insecure: []string{"reg.lab:5000", "plain.lab"}}
	for host, want := range map[string]bool{
		"127.0.0.1:5000": true, "localhost:5000": true, "[::1]:80": true, "localhost": true,
		"reg.lab:5000": true, "plain.lab:443": true, "reg.lab": false,
		"ghcr.io": false, "10.0.0.1:5000": false,
	} {
		if got := rm.plainHTTP(host); got != want {
			t.Errorf("plainHTTP(%s) = %v, want %v", host, got, want)
		}
	}
}
