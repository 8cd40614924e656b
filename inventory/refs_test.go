package inventory

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckReferences(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "id")
	if err := os.WriteFile(key, []byte("key"), 0o600); err != nil {
		t.Fatal(err)
	}
	doc := `apiVersion: vzfleet.dev/v1alpha1
kind: Inventory
defaults:
  ssh: {user: u, identityFile: id}
  guestSSH: {privateKey: {env: GUEST_KEY}}
hosts:
  - {name: ok, ssh: {address: a}}
  - name: missing
    ssh: {address: b, identityFile: nope}
    cluster: {operatorKubeconfig: ., nodeCredentials: {kubeconfig: {file: gone.conf}}}
    guestSSH: {password: {env: UNSET_VAR}}
`
	inv, err := Parse([]byte(doc), "t.yaml", WithBaseDir(dir), WithHomeDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"GUEST_KEY": "secret-value"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	err = inv.CheckReferences(lookup)
	if err == nil {
		t.Fatal("want errors for the missing references")
	}
	want := []string{
		"t.yaml:9:37: hosts[1].ssh.identityFile: identity file " + filepath.Join(dir, "nope") + " does not exist",
		"t.yaml:10:35: hosts[1].cluster.operatorKubeconfig: operator kubeconfig " + dir + " is not a regular file",
		"t.yaml:10:75: hosts[1].cluster.nodeCredentials.kubeconfig.file: secret file " + filepath.Join(dir, "gone.conf") + " does not exist",
		"t.yaml:11:32: hosts[1].guestSSH.password.env: environment variable UNSET_VAR is not set",
	}
	got := strings.Split(err.Error(), "\n")
	if len(got) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(got), len(want), err)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("error %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
	if strings.Contains(err.Error(), "secret-value") {
		t.Error("a secret value leaked into an error")
	}
	delete(env, "GUEST_KEY")
	if err := inv.CheckReferences(lookup); err == nil || !strings.Contains(err.Error(), "hosts[0].guestSSH.privateKey.env") && !strings.Contains(err.Error(), "defaults.guestSSH.privateKey.env") {
		t.Errorf("unset default env var not reported: %v", err)
	}
}
