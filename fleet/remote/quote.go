package remote

import "strings"

// Quote returns argv as one command line for a POSIX shell (sh, bash, zsh
// on macOS): words made only of safe characters stay bare, everything else
// is single-quoted, so each element reaches the program unchanged.
func Quote(args ...string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = quoteWord(a)
	}
	return strings.Join(quoted, " ")
}

func quoteWord(s string) string {
	if s == "" {
		return "''"
	}
	if isSafeWord(s) {
		return s
	}
	// Inside single quotes nothing is special; a single quote itself ends
	// the quoting, is escaped, and quoting resumes.
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// isSafeWord: letters, digits and _./:@,+- need no quoting in any POSIX
// shell or zsh ('=' and '~' do in zsh at the start of a word, '%' and '^'
// in some shells, so they are quoted).
func isSafeWord(s string) bool {
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("_./:@,+-", r):
		default:
			return false
		}
	}
	return true
}
