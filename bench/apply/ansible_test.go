package apply

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// The playbook does what apply does, the way one would write it for
// Ansible: directories, the files copied with checksum comparison (secrets
// 0600), the node config and the plist templated, the binary copied to a
// staging path and, when that changed, signed into place (codesign
// changes a binary's bytes, so the signed file itself cannot be compared),
// a kickstart when only files changed and a bootout/bootstrap when the
// plist did. It does not mint node certificates (they are copied from the
// cold apply) and does not wait for the node to be Ready.
const playbook = `- hosts: macs
  gather_facts: false
  vars:
    label: {{LABEL}}
  tasks:
    - name: directories
      file: {path: "{{ item }}", state: directory, mode: "0755"}
      loop: {{DIRS}}
    - name: entitlements and CA
      copy: {src: "{{ item.src }}", dest: "{{ item.dest }}", mode: "0644", owner: "0", group: "0"}
      loop:
        - {src: files/entitlements, dest: {{ENTITLEMENTS}}}
        - {src: files/ca.crt, dest: {{CA}}}
      notify: kickstart
    - name: node credentials
      copy: {src: "files/{{ inventory_hostname }}/{{ item.name }}", dest: "{{ item.dest }}", mode: "{{ item.mode }}", owner: "0", group: "0"}
      loop:
        - {name: kubeconfig, dest: {{KUBECONFIG}}, mode: "0600"}
        - {name: serving.crt, dest: {{CERT}}, mode: "0644"}
        - {name: serving.key, dest: {{KEY}}, mode: "0600"}
        - {name: guest-ssh-key, dest: {{GUESTKEY}}, mode: "0600"}
      notify: kickstart
    - name: node config
      template: {src: templates/vz-node.yaml.j2, dest: {{CONFIG}}, mode: "0644", owner: "0", group: "0"}
      notify: kickstart
    - name: binary (staging copy)
      copy: {src: files/vz-node, dest: {{STAGED}}, mode: "0755", owner: "0", group: "0"}
      register: binary
    - name: sign and install the binary
      shell: cp {{STAGED}} {{BINARY}}.new && codesign --force --sign - --entitlements {{ENTITLEMENTS}} {{BINARY}}.new && mv -f {{BINARY}}.new {{BINARY}}
      when: binary.changed
      notify: kickstart
    - name: launchd plist
      template: {src: templates/plist.j2, dest: {{PLIST}}, mode: "0644", owner: "0", group: "0"}
      register: plist
    - name: load the job
      shell: launchctl bootout system/{{ label }} 2>/dev/null; launchctl bootstrap system {{PLIST}}
      when: plist.changed
  handlers:
    - name: kickstart
      command: launchctl kickstart -k system/{{ label }}
      when: not plist.changed
`

// stageAnsible writes the playbook, its files, an inventory and an
// ansible.cfg (forks = hosts, pipelining on, SSH connections reused:
// Ansible at its fastest) and returns the directory.
func (f *fixture) stageAnsible() (string, error) {
	dir := filepath.Join(f.dir, "ansible")
	h0 := f.hosts[0]
	p := h0.Paths
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	cfgPath := path.Join(p.ConfigDir, "vz-node.yaml")
	staged := path.Join(path.Dir(p.Binary), ".vz-node.unsigned")
	dirs := []string{p.ConfigDir, p.StateDir, p.CacheDir, path.Dir(p.Binary), path.Dir(p.Plist), path.Dir(p.Log)}
	var quoted []string
	for _, d := range dirs {
		quoted = append(quoted, q(d))
	}
	pb := strings.NewReplacer(
		"{{LABEL}}", p.LaunchdLabel,
		"{{DIRS}}", "["+strings.Join(quoted, ", ")+"]",
		"{{ENTITLEMENTS}}", q(p.Entitlements()),
		"{{CA}}", q(path.Join(p.ConfigDir, "ca.crt")),
		"{{KUBECONFIG}}", q(p.Kubeconfig()),
		"{{CERT}}", q(p.ServingCert()),
		"{{KEY}}", q(p.ServingKey()),
		"{{GUESTKEY}}", q(p.GuestSSHKey()),
		"{{CONFIG}}", q(cfgPath),
		"{{STAGED}}", shellQuote(staged),
		"{{BINARY}}", shellQuote(p.Binary),
		"{{PLIST}}", shellQuote(p.Plist),
	).Replace(playbook)
	// The sign step's command line is a shell string: its paths need
	// shell quoting, and the YAML scalar must not start with a quote.
	files := map[string][]byte{
		"playbook.yml": []byte(pb),
		"ansible.cfg": []byte(fmt.Sprintf(`[defaults]
inventory = hosts.ini
forks = %d
host_key_checking = True
interpreter_python = /usr/bin/python3
retry_files_enabled = False
stdout_callback = default
[ssh_connection]
pipelining = True
control_path_dir = %s
ssh_args = -F none -o ControlMaster=auto -o ControlPersist=120s -o IdentitiesOnly=yes -o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes
`, len(f.hosts), filepath.Join(dir, "cp"), f.lab.KnownHostsFile)),
	}
	var inv strings.Builder
	inv.WriteString("[macs]\n")
	for _, h := range f.hosts {
		fmt.Fprintf(&inv, "%s ansible_host=%s\n", h.Name, h.SSH.Address)
	}
	fmt.Fprintf(&inv, "[macs:vars]\nansible_user=%s\nansible_ssh_private_key_file=%s\n", f.lab.User, f.lab.ClientKeyFile)
	files["hosts.ini"] = []byte(inv.String())

	byPath := func(h string, p string) []byte {
		for _, mf := range f.installed[h] {
			if mf.Path == p {
				return mf.Content
			}
		}
		return nil
	}
	files["files/entitlements"] = byPath(h0.Name, p.Entitlements())
	files["files/ca.crt"] = byPath(h0.Name, path.Join(p.ConfigDir, "ca.crt"))
	files["files/vz-node"] = byPath(h0.Name, p.Binary)
	files["templates/plist.j2"] = byPath(h0.Name, p.Plist)
	// The node config differs between hosts by name and address only.
	files["templates/vz-node.yaml.j2"] = []byte(strings.NewReplacer(h0.Name, "{{ inventory_hostname }}", h0.SSH.Address, "{{ ansible_host }}").
		Replace(string(byPath(h0.Name, cfgPath))))
	for _, h := range f.hosts {
		hp := h.Paths
		files["files/"+h.Name+"/kubeconfig"] = byPath(h.Name, hp.Kubeconfig())
		files["files/"+h.Name+"/serving.crt"] = byPath(h.Name, hp.ServingCert())
		files["files/"+h.Name+"/serving.key"] = byPath(h.Name, hp.ServingKey())
		files["files/"+h.Name+"/guest-ssh-key"] = byPath(h.Name, hp.GuestSSHKey())
	}
	for name, b := range files {
		if b == nil {
			return "", fmt.Errorf("ansible: no content for %s", name)
		}
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return "", err
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			return "", err
		}
	}
	return dir, os.MkdirAll(filepath.Join(dir, "cp"), 0o700)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// ansiblePlaybook runs the playbook and returns its recap and the CPU
// time ansible-playbook used with its workers and ssh processes.
func ansiblePlaybook(dir string) (string, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ansible-playbook", "playbook.yml")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "ANSIBLE_CONFIG="+filepath.Join(dir, "ansible.cfg"), "SSH_AUTH_SOCK=", "ANSIBLE_NOCOLOR=1")
	out, err := cmd.CombinedOutput()
	recap := string(out)
	if i := strings.Index(recap, "PLAY RECAP"); i >= 0 {
		recap = recap[i:]
	}
	if err != nil {
		return recap, 0, fmt.Errorf("ansible-playbook: %v\n%s", err, out)
	}
	return recap, processCPU(cmd.ProcessState), nil
}
