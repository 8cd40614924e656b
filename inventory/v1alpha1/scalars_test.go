package v1alpha1

import (
	"strconv"
	"strings"
	"testing"
)

func TestScalars(t *testing.T) {
	cases := []struct {
		in      string
		into    interface{ UnmarshalText([]byte) error }
		want    string // formatted result, or the start of the error
		wantErr bool
	}{
		{"90s", &Duration{}, "1m30s", false},
		{"1h30m", &Duration{}, "1h30m0s", false},
		{"30", &Duration{}, `invalid duration "30": write a number with a unit`, true},
		{"500m", &Quantity{}, "500m", false},
		{"4Gi", &Quantity{}, "4Gi", false},
		{"2GB", &Quantity{}, `invalid quantity "2GB"`, true},
		{"dedicated=ci:NoSchedule", &Taint{}, "dedicated|ci|NoSchedule", false},
		{"vzfleet.dev/macos:NoExecute", &Taint{}, "vzfleet.dev/macos||NoExecute", false},
		{"k=v:a:b", &Taint{}, `invalid taint "k=v:a:b"`, true},
		{":NoSchedule", &Taint{}, `invalid taint ":NoSchedule"`, true},
		{"NoSchedule", &Taint{}, `invalid taint "NoSchedule"`, true},
		{"3", &IntOrPercent{}, "3", false},
		{"25%", &IntOrPercent{}, "25%", false},
		{"half", &IntOrPercent{}, `invalid value "half"`, true},
	}
	for _, c := range cases {
		err := c.into.UnmarshalText([]byte(c.in))
		if c.wantErr {
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Errorf("%q: got error %v, want %q...", c.in, err, c.want)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		var got string
		switch v := c.into.(type) {
		case *Duration:
			got = v.Duration.String()
		case *Quantity:
			got = v.String()
		case *Taint:
			got = v.Key + "|" + v.Value + "|" + v.Effect
		case *IntOrPercent:
			got = strconv.Itoa(v.Value)
			if v.Percent {
				got += "%"
			}
		}
		if got != c.want {
			t.Errorf("%q: got %q, want %q", c.in, got, c.want)
		}
	}
}

func TestSetDefaultsKeepsSetValues(t *testing.T) {
	port, label := 2222, "com.example.agent"
	h := HostSpec{SSH: &SSH{Port: &port, User: ptr("root")}, Paths: &Paths{LaunchdLabel: &label}}
	SetDefaultsHost("mini-01", &h)
	switch {
	case *h.SSH.Port != 2222:
		t.Errorf("port overwritten: %d", *h.SSH.Port)
	case *h.SSH.Sudo:
		t.Error("sudo defaulted on for root")
	case !*h.SSH.Agent:
		t.Error("agent not defaulted on without an identity file")
	case *h.Node.Name != "mini-01":
		t.Errorf("node name %q, want the host name", *h.Node.Name)
	case *h.Paths.Plist != "/Library/LaunchDaemons/com.example.agent.plist":
		t.Errorf("plist %q does not follow the label", *h.Paths.Plist)
	case !*h.Cluster.NodeCredentials.CSR:
		t.Error("node credentials not defaulted to csr")
	}
}
