package sim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// tsLayout is the timestamp of macOS `log --style syslog` lines; entries are
// stored in that style, one per line, in <id>/guest.log.
const tsLayout = "2006-01-02 15:04:05.000000-0700"

// guestLog is a guest's unified log.
type guestLog struct {
	mu      sync.Mutex
	path    string
	console string // serial console file, or ""
}

// write appends an entry from process[pid]; console entries also go to the
// serial console, as boot and shutdown messages do.
func (l *guestLog) write(process string, pid int, msg string, console bool) {
	line := fmt.Sprintf("%s  localhost %s[%d]: %s\n", time.Now().Format(tsLayout), process, pid, strings.ReplaceAll(msg, "\n", " "))
	l.mu.Lock()
	defer l.mu.Unlock()
	appendFile(l.path, line)
	if console && l.console != "" {
		appendFile(l.console, line)
	}
}

func appendFile(path, s string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return // the guest's log is best effort, as on a real guest
	}
	f.WriteString(s)
	f.Close()
}

// entry is one parsed log line.
type entry struct {
	t       time.Time
	process string
	pid     string
	msg     string
}

func parseEntry(line string) (entry, bool) {
	if len(line) < len(tsLayout) {
		return entry{}, false
	}
	t, err := time.Parse(tsLayout, line[:len(tsLayout)])
	if err != nil {
		return entry{}, false
	}
	rest, ok := strings.CutPrefix(line[len(tsLayout):], "  localhost ")
	if !ok {
		return entry{}, false
	}
	head, msg, ok := strings.Cut(rest, ": ")
	if !ok {
		return entry{}, false
	}
	proc, pid, ok := strings.Cut(strings.TrimSuffix(head, "]"), "[")
	if !ok {
		return entry{}, false
	}
	return entry{t: t, process: proc, pid: pid, msg: msg}, true
}

// logArgs are the options of `log show` and `log stream` the guest honours.
type logArgs struct {
	style      string
	process    string
	since      time.Time     // show: --last / --start
	until      time.Time     // show: --end
	timeout    time.Duration // stream: --timeout
	predicate  string
	hasSummary bool
}

// parseLogArgs reads `log show|stream` options the way macOS's log(1) does:
// unknown ones are an error.
func parseLogArgs(verb string, args []string, now time.Time) (logArgs, error) {
	a := logArgs{style: "default", hasSummary: verb == "show"}
	for i := 0; i < len(args); i++ {
		opt := args[i]
		val := func() (string, error) {
			if i+1 >= len(args) {
				return "", fmt.Errorf("log: option %s requires an argument", opt)
			}
			i++
			return args[i], nil
		}
		var v string
		var err error
		switch opt {
		case "--info", "--debug", "--signpost", "--source", "--no-pager", "--backtrace", "--loss", "--mach-continuous-time":
			continue
		case "--style", "--process", "--predicate", "--level", "--color", "--type", "--last", "--start", "--end", "--timeout":
			if v, err = val(); err != nil {
				return a, err
			}
		default:
			return a, fmt.Errorf("log: unknown option %q for log %s", opt, verb)
		}
		switch opt {
		case "--style":
			if v != "syslog" && v != "compact" && v != "default" {
				return a, fmt.Errorf("log: unsupported style %q (syslog, compact, default)", v)
			}
			a.style = v
		case "--process":
			a.process = v
		case "--predicate":
			a.predicate = v
		case "--last":
			if verb != "show" {
				return a, fmt.Errorf("log: --last is an option of log show")
			}
			d, err := parseDuration(v)
			if err != nil {
				return a, err
			}
			a.since = now.Add(-d)
		case "--start", "--end":
			if verb != "show" {
				return a, fmt.Errorf("log: %s is an option of log show", opt)
			}
			t, err := parseDate(v)
			if err != nil {
				return a, err
			}
			if opt == "--start" {
				a.since = t
			} else {
				a.until = t
			}
		case "--timeout":
			if verb != "stream" {
				return a, fmt.Errorf("log: --timeout is an option of log stream")
			}
			if a.timeout, err = parseDuration(v); err != nil {
				return a, err
			}
		}
	}
	return a, nil
}

// parseDuration reads log(1)'s <num>[s|m|h|d] (bare numbers are seconds).
func parseDuration(s string) (time.Duration, error) {
	unit := time.Second
	num := s
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 's':
			num = s[:n-1]
		case 'm':
			unit, num = time.Minute, s[:n-1]
		case 'h':
			unit, num = time.Hour, s[:n-1]
		case 'd':
			unit, num = 24*time.Hour, s[:n-1]
		}
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("log: invalid duration %q (want <num>[s|m|h|d])", s)
	}
	return time.Duration(v * float64(unit)), nil
}

// parseDate reads log(1)'s "YYYY-MM-DD[ HH:MM:SS[ZZZZZ]]" in local time.
func parseDate(s string) (time.Time, error) {
	for _, layout := range []string{"2006-01-02 15:04:05-0700", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("log: invalid date %q (want YYYY-MM-DD [HH:MM:SS])", s)
}

func (a logArgs) header(w io.Writer) {
	if a.predicate != "" {
		fmt.Fprintf(w, "Filtering the log data using \"%s\"\n", a.predicate)
	}
	switch a.style {
	case "syslog":
		fmt.Fprintln(w, "Timestamp                       (process)[PID]")
	case "compact":
		fmt.Fprintln(w, "Timestamp               Ty Process[PID:TID]")
	default:
		fmt.Fprintln(w, "Timestamp                       Thread     Type        Activity             PID    TTL  ")
	}
}

func (a logArgs) match(e entry) bool {
	return (a.process == "" || e.process == a.process) &&
		(a.since.IsZero() || !e.t.Before(a.since)) &&
		(a.until.IsZero() || !e.t.After(a.until))
}

func (a logArgs) render(w io.Writer, e entry) {
	switch a.style {
	case "syslog":
		fmt.Fprintf(w, "%s  localhost %s[%s]: %s\n", e.t.Format(tsLayout), e.process, e.pid, e.msg)
	case "compact":
		fmt.Fprintf(w, "%s Df %s[%s:%s] %s\n", e.t.Format("2006-01-02 15:04:05.000"), e.process, e.pid, e.pid, e.msg)
	default:
		fmt.Fprintf(w, "%s 0x%-8x Default     0x0                  %-6s 0    %s: %s\n", e.t.Format(tsLayout), 0, e.pid, e.process, e.msg)
	}
}

// show writes the stored entries a selects, then log show's summary.
func (l *guestLog) show(w io.Writer, a logArgs) error {
	f, err := os.Open(l.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	a.header(w)
	n := 0
	if f != nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			if e, ok := parseEntry(sc.Text()); ok && a.match(e) {
				a.render(w, e)
				n++
			}
		}
		if err := sc.Err(); err != nil {
			return err
		}
	}
	fmt.Fprintln(w, strings.Repeat("-", 116))
	fmt.Fprintf(w, "Log      - Default: %10d, Info: %16d, Debug: %13d, Error: %10d, Fault: %10d\n", n, 0, 0, 0, 0)
	fmt.Fprintf(w, "Activity - Create: %11d, Transition: %10d, Actions: %11d\n", 0, 0, 0)
	return nil
}

// streamPoll is how often log stream looks for new entries (other
// processes, like the guest's logger, append to the file too).
const streamPoll = 100 * time.Millisecond

// stream writes entries appended from now on until ctx ends.
func (l *guestLog) stream(ctx context.Context, w io.Writer, a logArgs) error {
	if a.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, a.timeout)
		defer cancel()
	}
	f, err := os.OpenFile(l.path, os.O_RDONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		return err
	}
	a.header(w)
	r := bufio.NewReader(f)
	var partial string
	tick := time.NewTicker(streamPoll)
	defer tick.Stop()
	for {
		line, err := r.ReadString('\n')
		partial += line
		if err == nil {
			if e, ok := parseEntry(strings.TrimSuffix(partial, "\n")); ok && a.match(e) {
				a.render(w, e)
			}
			partial = ""
			continue
		}
		if err != io.EOF {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
