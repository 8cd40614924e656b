package v1alpha1

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
)

// Duration is a Go duration string such as 30s, 5m or 1h30m.
type Duration struct{ time.Duration }

// UnmarshalText parses a duration and says how to write one when it fails.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q: write a number with a unit, e.g. 30s, 5m or 1h", clip(string(b)))
	}
	d.Duration = v
	return nil
}

// JSONSchemaType describes Duration in the JSON Schema.
func (Duration) JSONSchemaType() map[string]any {
	return map[string]any{"type": "string", "pattern": `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`}
}

// Quantity is a Kubernetes resource quantity such as 2, 500m or 4Gi.
type Quantity struct{ resource.Quantity }

// UnmarshalText parses a Kubernetes quantity.
func (q *Quantity) UnmarshalText(b []byte) error {
	v, err := resource.ParseQuantity(string(b))
	if err != nil {
		return fmt.Errorf("invalid quantity %q: use a Kubernetes quantity, e.g. 2, 500m, 512Mi or 4Gi", clip(string(b)))
	}
	q.Quantity = v
	return nil
}

// JSONSchemaType describes Quantity in the JSON Schema.
func (Quantity) JSONSchemaType() map[string]any {
	return map[string]any{"anyOf": []any{
		map[string]any{"type": "integer", "minimum": 0},
		map[string]any{"type": "string", "pattern": `^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$`},
	}}
}

// Taint is a node taint written as key=value:Effect or key:Effect. Only the
// shape is checked here; the key, value and effect are validated with the
// rest of the inventory.
type Taint struct {
	Key    string
	Value  string
	Effect string
}

// UnmarshalText splits a taint into key, value and effect.
func (t *Taint) UnmarshalText(b []byte) error {
	s := string(b)
	kv, effect, ok := strings.Cut(s, ":")
	if !ok || kv == "" || effect == "" || strings.Contains(effect, ":") {
		return fmt.Errorf("invalid taint %q: write key=value:Effect or key:Effect, e.g. dedicated=ci:NoSchedule", clip(s))
	}
	t.Key, t.Value, _ = strings.Cut(kv, "=")
	t.Effect = effect
	return nil
}

// JSONSchemaType describes Taint in the JSON Schema.
func (Taint) JSONSchemaType() map[string]any {
	return map[string]any{"type": "string", "pattern": `^[^=:]+(=[^:]*)?:(NoSchedule|PreferNoSchedule|NoExecute)$`}
}

// IntOrPercent is a count (3) or a percentage ("25%").
type IntOrPercent struct {
	Value   int
	Percent bool
}

// UnmarshalText parses a count or a percentage.
func (v *IntOrPercent) UnmarshalText(b []byte) error {
	s := string(b)
	num, percent := strings.CutSuffix(s, "%")
	n, err := strconv.Atoi(num)
	if err != nil {
		return fmt.Errorf("invalid value %q: write a count (2) or a percentage (25%%)", clip(s))
	}
	v.Value, v.Percent = n, percent
	return nil
}

// JSONSchemaType describes IntOrPercent in the JSON Schema.
func (IntOrPercent) JSONSchemaType() map[string]any {
	return map[string]any{"anyOf": []any{
		map[string]any{"type": "integer", "minimum": 1},
		map[string]any{"type": "string", "pattern": `^[0-9]+%$`},
	}}
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:20] + "..."
	}
	return s
}
