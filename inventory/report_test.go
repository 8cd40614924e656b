package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

func TestReport(t *testing.T) {
	valid, err := Load("testdata/valid/overrides.yaml", testOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	_, invalidErr := Load("testdata/invalid/duplicate-host.yaml")
	if invalidErr == nil {
		t.Fatal("want an error")
	}
	cases := []struct {
		name  string
		r     Report
		valid bool
	}{
		{"valid", NewReport("testdata/valid/overrides.yaml", valid.Hosts, nil), true},
		{"invalid", NewReport("testdata/invalid/duplicate-host.yaml", nil, invalidErr), false},
		{"read-error", NewReport("missing.yaml", nil, fmt.Errorf("read inventory: %w", errors.New("open missing.yaml: no such file or directory"))), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.r.Valid != c.valid {
				t.Errorf("Valid = %v", c.r.Valid)
			}
			var text, js bytes.Buffer
			if err := c.r.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			if err := c.r.WriteJSON(&js); err != nil {
				t.Fatal(err)
			}
			golden(t, "testdata/report/"+c.name+".txt", text.Bytes())
			golden(t, "testdata/report/"+c.name+".json", js.Bytes())
		})
	}
}

func TestErrorsUnpacksWrapped(t *testing.T) {
	_, err := Load("testdata/invalid/duplicate-host.yaml")
	wrapped := fmt.Errorf("apply: %w", err)
	if got, want := len(Errors(wrapped)), len(Errors(err)); got != want || got < 3 {
		t.Errorf("Errors(wrapped) found %d, unwrapped %d", got, want)
	}
	if e := Errors(errors.New("plain")); len(e) != 1 || e[0].Message != "plain" {
		t.Errorf("plain error: %#v", e)
	}
}
