package tui

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/charmbracelet/x/exp/teatest"
)

// TestProgram runs the model in a real bubbletea program (teatest) on a
// 100x14 terminal: filter by a label value, sort by name, open and close a
// host's detail, quit; the final frame is golden.
func TestProgram(t *testing.T) {
	m, _, _ := fixture(t, 100, 14, Options{Detail: func(context.Context, string) (Detail, error) { return Detail{}, nil }})
	tm := teatest.NewTestModel(t, m, teatest.WithInitialTermSize(100, 14))
	waitOutput := func(what string) {
		t.Helper()
		teatest.WaitFor(t, tm.Output(), func(b []byte) bool { return bytes.Contains(b, []byte(what)) },
			teatest.WithDuration(5*time.Second), teatest.WithCheckInterval(10*time.Millisecond))
	}
	waitOutput("mini-006")
	tm.Send(key("/"))
	tm.Type("release")
	tm.Send(key("enter"))
	waitOutput("shown 4/8")
	tm.Send(key("s"))
	waitOutput("sorted by name")
	tm.Send(key("down"))
	tm.Send(key("enter"))
	waitOutput("host mini-008")
	tm.Send(key("esc"))
	tm.Send(key("q"))
	final, ok := tm.FinalModel(t, teatest.WithFinalTimeout(5*time.Second)).(Model)
	if !ok {
		t.Fatal("the final model is not a Model")
	}
	if r, _ := final.Selected(); r.Host != "mini-008" || final.mode != modeList {
		t.Errorf("final cursor on %s in mode %d, want mini-008 in the list", r.Host, final.mode)
	}
	golden(t, "program-final", final.View())
}
