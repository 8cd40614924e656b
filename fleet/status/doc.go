// Package status is the model behind `fleetctl status`: one Row per
// inventory host, merged from two sources that age differently.
//
//   - Kubernetes (KubeView): an informer on nodes and pods gives node
//     readiness, the vz-node version the node reports, VM slots, pods and
//     cached images. It is live and cheap, so it is read on every snapshot.
//   - SSH (Poller with a Gatherer): macOS version, free disk, the installed
//     vz-node and the launchd job, gathered on a slower interval, at most
//     Concurrency hosts at a time, each poll bounded by a timeout so an
//     unreachable host never holds up the others.
//
// Store keeps the latest of both per host and computes rows with a
// freshness marker: LIVE, STALE when the data is older than
// Thresholds.StaleAfter, OFFLINE when Thresholds.OfflineAfter polls in a row
// failed. Rows sort (problems first by default), filter (substring or label
// selector) and render as a table, JSON, YAML or a plain stream of changes;
// fleet/tui draws the same rows in a terminal UI.
package status
