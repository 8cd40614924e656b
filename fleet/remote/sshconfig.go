package remote

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// sshConfig is the part of an OpenSSH client configuration (ssh_config(5))
// that fleetctl honours: Host blocks (patterns with *, ? and !negation),
// "Match all", Include, and the keywords HostName, Port, User, IdentityFile,
// IdentityAgent, IdentitiesOnly, ProxyJump, UserKnownHostsFile, ConnectTimeout and
// ServerAliveInterval. For each keyword the first value found wins, as in
// ssh; IdentityFile accumulates. Match blocks with other criteria never
// apply (fleetctl cannot evaluate them), which errs towards plain settings.
type sshConfig struct {
	entries []configEntry
}

type configEntry struct {
	cond  []string // Host patterns; nil means every host
	never bool     // a Match block fleetctl does not evaluate
	key   string   // lower-case keyword
	args  []string
	pos   string // file:line, for errors
}

// hostSettings are the values the configuration gives one host alias.
type hostSettings struct {
	HostName            string
	Port                string
	User                string
	IdentityFiles       []string
	IdentityAgent       string
	IdentitiesOnly      string
	ProxyJump           string
	UserKnownHostsFiles []string
	ConnectTimeout      string
	ServerAliveInterval string
}

const maxIncludeDepth = 16

// maxConfigLine bounds one line (ssh's own limit is 4096 bytes per line).
const maxConfigLine = 64 << 10

// parseSSHConfig reads a configuration. Include paths that are relative
// resolve against dir (~/.ssh for the user's file, as in ssh).
func parseSSHConfig(r io.Reader, name, dir string) (*sshConfig, error) {
	c := &sshConfig{}
	if err := c.parse(r, name, dir, nil, false, 0); err != nil {
		return nil, err
	}
	return c, nil
}

func loadSSHConfig(file string) (*sshConfig, error) {
	f, err := os.Open(file)
	if errors.Is(err, os.ErrNotExist) {
		return &sshConfig{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ssh config: %w", err)
	}
	defer f.Close()
	return parseSSHConfig(f, file, filepath.Dir(file))
}

func (c *sshConfig) parse(r io.Reader, name, dir string, cond []string, never bool, depth int) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxConfigLine)
	line := 0
	for sc.Scan() {
		line++
		pos := fmt.Sprintf("%s:%d", name, line)
		key, args, err := splitConfigLine(sc.Text())
		if err != nil {
			return fmt.Errorf("ssh config %s: %w", pos, err)
		}
		switch key {
		case "":
			continue
		case "host":
			if len(args) == 0 {
				return fmt.Errorf("ssh config %s: Host needs at least one pattern", pos)
			}
			cond, never = args, false
		case "match":
			if len(args) == 1 && strings.EqualFold(args[0], "all") {
				cond, never = nil, false
			} else {
				cond, never = nil, true
			}
		case "include":
			if depth >= maxIncludeDepth {
				return fmt.Errorf("ssh config %s: Include nested more than %d deep", pos, maxIncludeDepth)
			}
			for _, pattern := range args {
				if err := c.include(pattern, dir, cond, never, depth+1); err != nil {
					return fmt.Errorf("ssh config %s: %w", pos, err)
				}
			}
		default:
			if len(args) == 0 {
				return fmt.Errorf("ssh config %s: %s needs a value", pos, key)
			}
			c.entries = append(c.entries, configEntry{cond: cond, never: never, key: key, args: args, pos: pos})
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("ssh config %s: line %d: %w", name, line+1, err)
	}
	return nil
}

func (c *sshConfig) include(pattern, dir string, cond []string, never bool, depth int) error {
	pattern = expandHome(pattern)
	if !filepath.IsAbs(pattern) {
		pattern = filepath.Join(dir, pattern)
	}
	files, err := filepath.Glob(pattern)
	if err != nil {
		return fmt.Errorf("ssh_config Include %s: %w", pattern, err)
	}
	for _, file := range files {
		f, err := os.Open(file)
		if err != nil {
			return fmt.Errorf("ssh_config Include: %w", err)
		}
		err = c.parse(f, file, dir, cond, never, depth)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// splitConfigLine splits "Keyword value..." or "Keyword=value"; values may
// be double-quoted. It returns an empty key for blank and comment lines.
func splitConfigLine(s string) (string, []string, error) {
	s = strings.TrimSpace(s)
	if s == "" || s[0] == '#' {
		return "", nil, nil
	}
	i := strings.IndexAny(s, " \t=")
	if i < 0 {
		return strings.ToLower(s), nil, nil
	}
	key := strings.ToLower(s[:i])
	rest := strings.TrimLeft(s[i:], " \t")
	if strings.HasPrefix(rest, "=") {
		rest = strings.TrimLeft(rest[1:], " \t")
	}
	var args []string
	for rest != "" {
		var word string
		if rest[0] == '"' {
			end := strings.IndexByte(rest[1:], '"')
			if end < 0 {
				return "", nil, fmt.Errorf("%s: unterminated quote", key)
			}
			word, rest = rest[1:end+1], rest[end+2:]
		} else {
			end := strings.IndexAny(rest, " \t")
			if end < 0 {
				end = len(rest)
			}
			word, rest = rest[:end], rest[end:]
		}
		if strings.HasPrefix(word, "#") && len(args) > 0 {
			break // a trailing comment
		}
		args = append(args, word)
		rest = strings.TrimLeft(rest, " \t")
	}
	return key, args, nil
}

// lookup returns the settings for alias (the name given to fleetctl).
func (c *sshConfig) lookup(alias string) hostSettings {
	var h hostSettings
	seen := map[string]bool{} // the first value of a keyword wins
	for _, e := range c.entries {
		if e.never || (e.cond != nil && !matchHost(e.cond, alias)) {
			continue
		}
		if e.key == "identityfile" {
			h.IdentityFiles = append(h.IdentityFiles, e.args[0])
			continue
		}
		if seen[e.key] {
			continue
		}
		seen[e.key] = true
		switch e.key {
		case "hostname":
			h.HostName = e.args[0]
		case "port":
			h.Port = e.args[0]
		case "user":
			h.User = e.args[0]
		case "identityagent":
			h.IdentityAgent = e.args[0]
		case "identitiesonly":
			h.IdentitiesOnly = strings.ToLower(e.args[0])
		case "proxyjump":
			h.ProxyJump = e.args[0]
		case "userknownhostsfile":
			h.UserKnownHostsFiles = append([]string(nil), e.args...)
		case "connecttimeout":
			h.ConnectTimeout = e.args[0]
		case "serveraliveinterval":
			h.ServerAliveInterval = e.args[0]
		}
	}
	if h.HostName != "" {
		h.HostName = strings.ReplaceAll(strings.ReplaceAll(h.HostName, "%h", alias), "%%", "%")
	}
	return h
}

// matchHost applies a Host line: some positive pattern must match and no
// negated one.
func matchHost(patterns []string, host string) bool {
	matched := false
	for _, p := range patterns {
		for _, p := range strings.Split(p, ",") {
			negated := strings.HasPrefix(p, "!")
			p = strings.TrimPrefix(p, "!")
			if !globMatch(p, host) {
				continue
			}
			if negated {
				return false
			}
			matched = true
		}
	}
	return matched
}

// globMatch matches ssh's patterns: '*' any run, '?' one character,
// case-insensitively (host names are).
func globMatch(pattern, s string) bool {
	pattern, s = strings.ToLower(pattern), strings.ToLower(s)
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case star >= 0:
			// Let the last '*' swallow one more byte and retry.
			mark++
			p, i = star+1, mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// expandHome replaces a leading "~/" (or a lone "~") with the home directory.
func expandHome(p string) string {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return p
	}
	return filepath.Join(home, p[1:])
}

// expandTokens expands the ssh_config tokens fleetctl knows in file paths
// (IdentityFile, UserKnownHostsFile, IdentityAgent): ~, %d home, %u local
// user, %h remote host name, %r remote user, %p port, %% a percent sign.
// Unknown tokens are an error, like in ssh.
func expandTokens(p, host, user, port string) (string, error) {
	p = expandHome(p)
	if !strings.Contains(p, "%") {
		return p, nil
	}
	home, _ := os.UserHomeDir()
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] != '%' {
			b.WriteByte(p[i])
			continue
		}
		if i+1 >= len(p) {
			return "", fmt.Errorf("%q ends with a lone %%", p)
		}
		i++
		switch p[i] {
		case '%':
			b.WriteByte('%')
		case 'd':
			b.WriteString(home)
		case 'u':
			b.WriteString(localUser())
		case 'h':
			b.WriteString(host)
		case 'r':
			b.WriteString(user)
		case 'p':
			b.WriteString(port)
		default:
			return "", fmt.Errorf("%q: token %%%c is not supported", p, p[i])
		}
	}
	return b.String(), nil
}
