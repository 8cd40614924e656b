package tui

import (
	tea "github.com/charmbracelet/bubbletea"
)

// lineInput is a one-line text field: typing appends, backspace deletes,
// ctrl+u clears. (bubbles/textinput would pull in a clipboard module the
// status screen has no use for.)
type lineInput struct {
	value []rune
}

func (in *lineInput) SetValue(s string) { in.value = []rune(s) }
func (in lineInput) Value() string      { return string(in.value) }

// Update applies one key.
func (in *lineInput) Update(k tea.KeyMsg) {
	switch k.Type {
	case tea.KeyRunes:
		in.value = append(in.value, k.Runes...)
	case tea.KeySpace:
		in.value = append(in.value, ' ')
	case tea.KeyBackspace:
		if len(in.value) > 0 {
			in.value = in.value[:len(in.value)-1]
		}
	case tea.KeyCtrlU:
		in.value = nil
	}
}

// View shows the value with a block cursor.
func (in lineInput) View() string { return string(in.value) + "█" }
