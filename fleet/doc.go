// Package fleet is fleetctl's bootstrapper: it makes each Mac in an
// inventory match it. Per host it runs small phases in order, each with one
// job — connect, facts, preflight, plan, upload, service, wait Ready, node
// metadata — and rolls a host back to its previous files when the new
// vz-node does not become Ready. Hosts run in parallel (Options.Concurrency)
// while a rollout budget (Options.MaxUnavailable) bounds how many restart at
// once; one host's failure never stops the others, and the Report says which
// hosts failed and why.
//
// Desired state is a list of managed files (content, mode, owner, sha256).
// What was installed is recorded on the host in a small state file, so a
// binary that codesign changed on the host still compares equal to the
// local one, and re-applying an unchanged inventory uploads nothing and
// restarts nothing.
package fleet
