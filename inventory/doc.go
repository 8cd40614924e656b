// Package inventory loads a fleet inventory: the YAML file listing the Mac
// hosts fleetctl manages, how to reach each over SSH, and how each becomes
// a Kubernetes node. It is the only place that knows the file format.
//
// Loading follows sigs.k8s.io/kind's config packages: the file is decoded
// strictly into the versioned types of package v1alpha1 (unknown fields,
// duplicate keys and wrong types are errors with file:line:col and the
// field path), the defaults block is deep-merged into every host, the
// format's defaults are applied, the result is converted to this package's
// types (local paths made absolute) and validated as a whole. Every problem
// found is reported, not just the first.
//
// Hostile or broken input fails fast: files over MaxFileSize and non-UTF-8
// data are refused before parsing, yaml.v3's nesting limits bound the
// parser, and alias expansion is charged against a node budget (yaml.v3
// guards aliases only when it decodes into Go values, which this loader
// does not use). YAML syntax errors carry yaml.v3's line number and no
// column, since yaml.v3 reports none.
//
// Secrets are only ever referenced (SecretRef: a file or an environment
// variable), never written in the inventory, and the loader never echoes a
// value that looks like one.
package inventory
