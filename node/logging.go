package node

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	vklog "github.com/virtual-kubelet/virtual-kubelet/log"
)

// NewLogger returns the agent's slog logger at level (debug, info, warn,
// error), writing text to stderr.
func NewLogger(level string) *slog.Logger {
	var l slog.Level
	switch strings.ToLower(level) {
	case "debug":
		l = slog.LevelDebug
	case "warn", "warning":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

// vkLogger adapts slog to virtual-kubelet's logger. Unlike the library's
// own adapter it formats any argument, so an error passed as the message
// does not panic.
type vkLogger struct{ l *slog.Logger }

var _ vklog.Logger = vkLogger{}

func (v vkLogger) log(level slog.Level, args ...any) {
	v.l.Log(context.Background(), level, fmt.Sprint(args...))
}

func (v vkLogger) Debug(a ...any)            { v.log(slog.LevelDebug, a...) }
func (v vkLogger) Debugf(f string, a ...any) { v.log(slog.LevelDebug, fmt.Sprintf(f, a...)) }
func (v vkLogger) Info(a ...any)             { v.log(slog.LevelInfo, a...) }
func (v vkLogger) Infof(f string, a ...any)  { v.log(slog.LevelInfo, fmt.Sprintf(f, a...)) }
func (v vkLogger) Warn(a ...any)             { v.log(slog.LevelWarn, a...) }
func (v vkLogger) Warnf(f string, a ...any)  { v.log(slog.LevelWarn, fmt.Sprintf(f, a...)) }
func (v vkLogger) Error(a ...any)            { v.log(slog.LevelError, a...) }
func (v vkLogger) Errorf(f string, a ...any) { v.log(slog.LevelError, fmt.Sprintf(f, a...)) }
func (v vkLogger) Fatal(a ...any)            { v.log(slog.LevelError, a...); os.Exit(1) }
func (v vkLogger) Fatalf(f string, a ...any) {
	v.log(slog.LevelError, fmt.Sprintf(f, a...))
	os.Exit(1)
}
func (v vkLogger) WithField(k string, val any) vklog.Logger { return vkLogger{v.l.With(k, val)} }
func (v vkLogger) WithError(err error) vklog.Logger         { return vkLogger{v.l.With("err", err)} }
func (v vkLogger) WithFields(f vklog.Fields) vklog.Logger {
	args := make([]any, 0, 2*len(f))
	for k, val := range f {
		args = append(args, k, val)
	}
	return vkLogger{v.l.With(args...)}
}
