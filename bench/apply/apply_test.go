// Package apply benchmarks `fleetctl apply` against simulated Macs
// (test/harness/machost: real OpenSSH servers in network namespaces, the
// macOS stand-ins, a real kube-apiserver) and, in the same run, the
// references the issue names:
//
//   - apply-cold: fresh hosts; fleetctl mints each node's certificates
//     through the CSR API, uploads and signs vz-node, installs its files,
//     bootstraps the launchd job and waits until every node is Ready on
//     the new version. to-uploaded-s is the slowest host's time until its
//     upload phase ended (connect, facts, preflight, plan with the CSRs,
//     upload): the part the transfer floor compares with.
//   - apply-noop: the unchanged inventory applied again, over the SSH
//     connections the last run left open in fleetctl's mux (the default,
//     --ssh-persist 60s); mux-cpu-s is the mux's CPU time in the run.
//   - apply-noop-direct: the same with --ssh-persist 0: fleetctl connects
//     to every host anew.
//   - floor-noop-connect: per host, all at once, one SSH connection and
//     one command (`true`): the least any tool working over SSH does.
//   - floor-noop-check: the same, with a command that hashes the managed
//     files, as a no-op check that trusts no record would.
//   - floor-go-sftp, floor-go-sftp-16w, floor-openssh-sftp: the same
//     bytes to the same paths on the same hosts, all at once, with
//     x/crypto/ssh + pkg/sftp (64 writes in flight per file, pkg/sftp's
//     default; and 16, what fleetctl keeps in flight) and with OpenSSH's
//     sftp -b (64 requests in flight): transfer only, nothing verified,
//     signed or restarted. More writes in flight than the hosts drain
//     queue in sshd, which costs the hosts CPU (see remote.uploadWrites):
//     16w is the floor on this transport.
//   - ansible-cold, ansible-noop: ansible-playbook (Debian's ansible-core)
//     doing the same copy/template/command tasks at its fastest (forks =
//     hosts, pipelining, persistent SSH connections, no fact gathering),
//     without minting certificates or waiting for Ready.
//
// machine-cpu-s (no-op and its floors) is the CPU time of the whole
// machine during the run: client, hosts, API server and everything idling
// in the background; when it is near the cores times the run's time, the
// run is CPU-bound on this shared machine.
//
// client-cpu-s is the CPU time of the client side alone: fleetctl (its
// mux apart: mux-cpu-s), the benchmark process for the Go floor, the sftp
// and ssh processes, and ansible-playbook with its workers and ssh
// processes. The hosts' side (sshd, the commands, vz-node) shares the
// same cores; only machine-cpu-s counts it.
//
// Run (as root; needs hack/tools/bin from `make tools`, openssh-server and
// ansible-core, which it installs with apt-get when missing):
//
//	VZFLEET_TOOLS_BIN=$PWD/hack/tools/bin go test ./bench/apply -run '^$' -bench . -benchtime 1x -timeout 60m
//
// VZFLEET_BENCH_HOSTS lists the fleet sizes (default "10,30").
package apply

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vzfleet/vzfleet/test/harness"
)

func hostCounts(b *testing.B) []int {
	v := os.Getenv("VZFLEET_BENCH_HOSTS")
	if v == "" {
		return []int{10, 30}
	}
	var out []int
	for _, s := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 200 {
			b.Fatalf("VZFLEET_BENCH_HOSTS=%q: want host counts from 1 to 200, comma-separated", v)
		}
		out = append(out, n)
	}
	return out
}

// needAnsible installs Debian's ansible-core when ansible-playbook is
// missing.
func needAnsible(b *testing.B) {
	b.Helper()
	if _, err := exec.LookPath("ansible-playbook"); err == nil {
		return
	}
	b.Log("installing ansible-core (apt-get)")
	cmd := exec.Command("apt-get", "install", "-y", "-qq", "--no-install-recommends", "ansible-core")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("ansible-playbook is missing and apt-get install ansible-core failed: %v\n%s", err, out)
	}
}

func BenchmarkApply(b *testing.B) {
	needAnsible(b)
	for _, n := range hostCounts(b) {
		b.Run("hosts="+strconv.Itoa(n), func(b *testing.B) { benchFleet(b, n) })
	}
}

func benchFleet(b *testing.B, n int) {
	f := startFixture(b, n)
	applied := false
	run := func(name string, fn func(b *testing.B)) { b.Run(name, fn) }

	run("apply-cold", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			f.reset()
			b.StartTimer()
			out := f.apply()
			b.StopTimer()
			if want := fmt.Sprintf("%d hosts changed, 0 unchanged", n); !strings.Contains(out, want) {
				b.Fatalf("cold apply: no %q in:\n%s", want, out)
			}
			b.ReportMetric(toUploaded(b, out).Seconds(), "to-uploaded-s")
			b.ReportMetric(f.lastCPU.Seconds(), "client-cpu-s")
			if testing.Verbose() {
				b.Log(strings.Join(phaseRE.FindAllString(out, -1), "\n"))
			}
			b.StartTimer()
		}
		applied = true
	})
	if !applied {
		return
	}
	f.capture()
	perHost := f.bytesPerHost()
	b.Logf("%d hosts, %.1f MB per host (%.1f MB in all)", n, float64(perHost)/1e6, float64(perHost)*float64(n)/1e6)

	for _, v := range []struct {
		name string
		args []string
	}{{"apply-noop", nil}, {"apply-noop-direct", []string{"--ssh-persist", "0"}}} {
		run(v.name, func(b *testing.B) {
			if v.args == nil {
				b.StopTimer()
				f.apply() // leaves the connections open in the mux
				b.StartTimer()
			}
			for range b.N {
				mux, machine := f.muxCPU(), harness.MachineCPU()
				out := f.apply(v.args...)
				machine = harness.MachineCPU() - machine
				if !strings.Contains(out, "no changes") {
					b.Fatalf("re-apply changed something:\n%s", out)
				}
				b.ReportMetric(f.lastCPU.Seconds(), "client-cpu-s")
				b.ReportMetric((f.muxCPU() - mux).Seconds(), "mux-cpu-s")
				b.ReportMetric(machine.Seconds(), "machine-cpu-s")
				if testing.Verbose() {
					b.Log(strings.Join(phaseRE.FindAllString(out, -1), "\n"))
				}
			}
		})
	}

	for _, fl := range []struct {
		name string
		run  func() error
	}{{"floor-noop-connect", f.floorConnect}, {"floor-noop-check", f.floorCheck}} {
		run(fl.name, func(b *testing.B) {
			for range b.N {
				before, machine := selfCPU(), harness.MachineCPU()
				if err := fl.run(); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric((selfCPU() - before).Seconds(), "client-cpu-s")
				b.ReportMetric((harness.MachineCPU() - machine).Seconds(), "machine-cpu-s")
			}
		})
	}

	for _, fl := range []struct {
		name     string
		inFlight int
	}{{"floor-go-sftp", 0}, {"floor-go-sftp-16w", 16}} {
		run(fl.name, func(b *testing.B) {
			b.SetBytes(perHost * int64(n))
			for range b.N {
				b.StopTimer()
				f.reset()
				b.StartTimer()
				before := selfCPU()
				if err := f.floorGo(fl.inFlight); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric((selfCPU() - before).Seconds(), "client-cpu-s")
			}
		})
	}

	batches, err := f.stageOpenSSH()
	if err != nil {
		b.Fatal(err)
	}
	run("floor-openssh-sftp", func(b *testing.B) {
		b.SetBytes(perHost * int64(n))
		for range b.N {
			b.StopTimer()
			f.reset()
			b.StartTimer()
			cpu, err := f.floorOpenSSH(batches)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(cpu.Seconds(), "client-cpu-s")
		}
	})

	dir, err := f.stageAnsible()
	if err != nil {
		b.Fatal(err)
	}
	ansibleDone := false
	run("ansible-cold", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			f.reset()
			b.StartTimer()
			recap, cpu, err := ansiblePlaybook(dir)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(cpu.Seconds(), "client-cpu-s")
			b.Log(recap)
		}
		ansibleDone = true
	})
	if ansibleDone {
		run("ansible-noop", func(b *testing.B) {
			for range b.N {
				recap, cpu, err := ansiblePlaybook(dir)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(cpu.Seconds(), "client-cpu-s")
				if !regexp.MustCompile(`changed=0\s`).MatchString(recap) || regexp.MustCompile(`changed=[1-9]`).MatchString(recap) {
					b.Fatalf("the second ansible run changed something:\n%s", recap)
				}
			}
		})
	}
	f.reset()
}

// selfCPU is the CPU time this process used so far (the Go floor runs
// in it).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// phaseRE matches a host's closing line: "<host>: changed in 5.1s (connect
// 20ms, facts 40ms, ...)".
var phaseRE = regexp.MustCompile(`(?m)^(\S+):\s+\S+ in \S+ \((.*)\)$`)

// toUploaded is the slowest host's time from its start to the end of its
// upload phase, from fleetctl's per-phase timings.
func toUploaded(b *testing.B, out string) time.Duration {
	b.Helper()
	var worst time.Duration
	found := false
	for _, m := range phaseRE.FindAllStringSubmatch(out, -1) {
		var sum time.Duration
		for _, part := range strings.Split(m[2], ", ") {
			name, dur, ok := strings.Cut(part, " ")
			if !ok {
				continue
			}
			d, err := time.ParseDuration(dur)
			if err != nil {
				b.Fatalf("phase timing %q: %v", part, err)
			}
			sum += d
			if name == "upload" {
				found = true
				break
			}
		}
		worst = max(worst, sum)
	}
	if !found {
		b.Fatalf("no per-phase timings in fleetctl's output:\n%s", out)
	}
	return worst
}
