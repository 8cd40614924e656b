package status

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// FormatEvents renders Kubernetes events one per line, oldest first,
// keeping the newest limit.
func FormatEvents(events []corev1.Event, limit int) []string {
	when := func(e corev1.Event) time.Time {
		switch {
		case !e.LastTimestamp.IsZero():
			return e.LastTimestamp.Time
		case !e.EventTime.IsZero():
			return e.EventTime.Time
		default:
			return e.CreationTimestamp.Time
		}
	}
	slices.SortStableFunc(events, func(a, b corev1.Event) int { return when(a).Compare(when(b)) })
	if limit > 0 && len(events) > limit {
		events = events[len(events)-limit:]
	}
	out := make([]string, 0, len(events))
	for _, e := range events {
		obj := e.InvolvedObject.Kind + "/" + e.InvolvedObject.Name
		if e.InvolvedObject.Namespace != "" {
			obj = e.InvolvedObject.Kind + "/" + e.InvolvedObject.Namespace + "/" + e.InvolvedObject.Name
		}
		count := ""
		if e.Count > 1 {
			count = fmt.Sprintf(" (x%d)", e.Count)
		}
		out = append(out, fmt.Sprintf("%s %-7s %s %s: %s%s", when(e).UTC().Format("15:04:05"),
			cmp.Or(e.Type, "Normal"), e.Reason, obj, oneLine(e.Message), count))
	}
	return out
}
