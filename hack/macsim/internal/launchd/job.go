package launchd

import (
	"fmt"
	"os"
	"syscall"

	"github.com/vzfleet/vzfleet/hack/macsim/internal/plist"
)

// Job is the part of a launchd.plist(5) that macsim's launchd honours.
type Job struct {
	Path                 string
	Label                string
	Program              string
	ProgramArguments     []string
	EnvKeys              []string
	Env                  map[string]string
	RunAtLoad            bool
	KeepAlive            KeepAlive
	StandardOutPath      string
	StandardErrorPath    string
	WorkingDirectory     string
	UserName             string
	ThrottleInterval     int // seconds; -1 when unset
	ExitTimeOut          int // seconds; -1 when unset
	Disabled             bool
	AbandonProcessGroup  bool
	SessionCreateIgnored bool
}

// KeepAlive is the KeepAlive key: a boolean, or a dictionary of conditions.
type KeepAlive struct {
	Always bool
	// Set when KeepAlive is a dictionary.
	Conditional    bool
	SuccessfulExit *bool
	Crashed        *bool
	// Other holds condition keys macsim does not model; their presence keeps
	// the job alive, as a condition that is usually true would.
	Other bool
}

// Wanted reports whether the job should be running while loaded at all.
func (k KeepAlive) Wanted() bool { return k.Always || k.Conditional }

// Restart decides, after the job exited, whether launchd relaunches it.
func (k KeepAlive) Restart(exitCode int, signaled bool) bool {
	if k.Always {
		return true
	}
	if !k.Conditional {
		return false
	}
	if k.Other {
		return true
	}
	if k.SuccessfulExit != nil {
		success := !signaled && exitCode == 0
		if success == *k.SuccessfulExit {
			return true
		}
	}
	if k.Crashed != nil && signaled == *k.Crashed {
		return true
	}
	return false
}

// LoadJob reads and checks a LaunchDaemon plist. The error says what is
// wrong; launchctl reports most of these as "5: Input/output error", as
// macOS does, and macsim's launchd logs the detail.
func LoadJob(path string) (*Job, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
		return nil, fmt.Errorf("%s: Path had bad ownership/permissions: owner uid %d, want root", path, st.Uid)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("%s: Path had bad ownership/permissions: mode %#o is group or world writable", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseJob(path, data)
}

// ParseJob reads a LaunchDaemon plist's content; path is for messages.
func ParseJob(path string, data []byte) (*Job, error) {
	v, err := plist.Decode(data)
	if err != nil {
		return nil, fmt.Errorf("%s: Invalid property list: %w", path, err)
	}
	d, ok := v.(*plist.Dict)
	if !ok {
		return nil, fmt.Errorf("%s: Invalid property list: the root is not a dictionary", path)
	}
	return jobFromDict(path, d)
}

func jobFromDict(path string, d *plist.Dict) (*Job, error) {
	j := &Job{Path: path, Env: map[string]string{}, ThrottleInterval: -1, ExitTimeOut: -1}
	bad := func(key, want string) error {
		return fmt.Errorf("%s: key %s: want %s", path, key, want)
	}
	for _, k := range d.Keys {
		v := d.Values[k]
		switch k {
		case "Label":
			s, ok := v.(string)
			if !ok {
				return nil, bad(k, "a string")
			}
			j.Label = s
		case "Program", "StandardOutPath", "StandardErrorPath", "WorkingDirectory", "UserName":
			s, ok := v.(string)
			if !ok {
				return nil, bad(k, "a string")
			}
			switch k {
			case "Program":
				j.Program = s
			case "StandardOutPath":
				j.StandardOutPath = s
			case "StandardErrorPath":
				j.StandardErrorPath = s
			case "WorkingDirectory":
				j.WorkingDirectory = s
			case "UserName":
				j.UserName = s
			}
		case "ProgramArguments":
			arr, ok := v.([]any)
			if !ok {
				return nil, bad(k, "an array of strings")
			}
			for _, e := range arr {
				s, ok := e.(string)
				if !ok {
					return nil, bad(k, "an array of strings")
				}
				j.ProgramArguments = append(j.ProgramArguments, s)
			}
		case "EnvironmentVariables":
			env, ok := v.(*plist.Dict)
			if !ok {
				return nil, bad(k, "a dictionary of strings")
			}
			for _, ek := range env.Keys {
				s, ok := env.Values[ek].(string)
				if !ok {
					return nil, bad(k+"."+ek, "a string")
				}
				j.EnvKeys = append(j.EnvKeys, ek)
				j.Env[ek] = s
			}
		case "RunAtLoad", "Disabled", "AbandonProcessGroup":
			b, ok := v.(bool)
			if !ok {
				return nil, bad(k, "a boolean")
			}
			switch k {
			case "RunAtLoad":
				j.RunAtLoad = b
			case "Disabled":
				j.Disabled = b
			case "AbandonProcessGroup":
				j.AbandonProcessGroup = b
			}
		case "ThrottleInterval", "ExitTimeOut":
			n, ok := v.(int64)
			if !ok || n < 0 {
				return nil, bad(k, "a non-negative integer")
			}
			if k == "ThrottleInterval" {
				j.ThrottleInterval = int(n)
			} else {
				j.ExitTimeOut = int(n)
			}
		case "KeepAlive":
			switch t := v.(type) {
			case bool:
				j.KeepAlive.Always = t
			case *plist.Dict:
				j.KeepAlive.Conditional = true
				for _, ck := range t.Keys {
					b, isBool := t.Values[ck].(bool)
					switch {
					case ck == "SuccessfulExit" && isBool:
						j.KeepAlive.SuccessfulExit = &b
					case ck == "Crashed" && isBool:
						j.KeepAlive.Crashed = &b
					default:
						j.KeepAlive.Other = true
					}
				}
			default:
				return nil, bad(k, "a boolean or a dictionary")
			}
		}
	}
	if j.Label == "" {
		return nil, fmt.Errorf("%s: Invalid or missing service identifier: no Label", path)
	}
	if j.Program == "" && len(j.ProgramArguments) == 0 {
		return nil, fmt.Errorf("%s: Invalid or missing Program/ProgramArguments", path)
	}
	return j, nil
}
