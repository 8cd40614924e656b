#!/usr/bin/env bash
# Builds the control-plane tools the tests and the lab run (kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl, etcd, metrics-server, staticcheck, oras) into
# hack/tools/bin.
# A tool is rebuilt only when its pinned version (the stamp) changes, so a
# second run takes well under a second.
set -euo pipefail
cd "$(dirname "$0")"
bin=${TOOLS_BIN:-$PWD/bin}
mkdir -p "$bin"

k8s_version=$(awk '$1=="require" && $2=="k8s.io/kubernetes" {print $3}' go.mod)
etcd_version=$(awk '$1=="go.etcd.io/etcd/server/v3" {print $2}' etcd/go.mod)
staticcheck_version=$(awk '$1=="require" && $2=="honnef.co/go/tools" {print $3}' lint/go.mod)
metrics_version=$(awk '$1=="require" && $2=="sigs.k8s.io/metrics-server" {print $3}' metrics-server/go.mod)
oras_version=$(awk '$1=="require" && $2=="oras.land/oras" {print $3}' oras/go.mod)
k8s_minor=$(echo "$k8s_version" | cut -d. -f2)
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=${k8s_version} \
-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${k8s_minor} \
-X k8s.io/component-base/version.gitTreeState=clean"

build() { # name version dir package
  local name=$1 version=$2 dir=$3 pkg=$4 stamp="$bin/.$1.version"
  if [[ -x "$bin/$name" && -f "$stamp" && "$(cat "$stamp")" == "$version" ]]; then
    echo "tools: $name $version is up to date"
    return
  fi
  echo "tools: building $name $version (cold builds take minutes; kube-apiserver ~5 min on 2 cores)"
  local start=$SECONDS
  (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$bin/$name.tmp" "$pkg")
  mv "$bin/$name.tmp" "$bin/$name"
  echo "$version" >"$stamp"
  echo "tools: built $name in $((SECONDS - start))s"
}

# build_pause compiles the kubelet's pod sandbox program (pause.c from the
# same Kubernetes source) statically: the tests' Docker engines import it
# as their pause image, as they cannot pull registry.k8s.io/pause.
build_pause() {
  local stamp="$bin/.pause.version"
  if [[ -x "$bin/pause" && -f "$stamp" && "$(cat "$stamp")" == "$k8s_version" ]]; then
    echo "tools: pause $k8s_version is up to date"
    return
  fi
  local src
  src="$(go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c"
  gcc -Os -static -DVERSION="$k8s_version" -o "$bin/pause.tmp" "$src"
  mv "$bin/pause.tmp" "$bin/pause"
  echo "$k8s_version" >"$stamp"
  echo "tools: built pause"
}

main() {
  build etcd "$etcd_version" etcd go.etcd.io/etcd/server/v3
  build staticcheck "$staticcheck_version" lint honnef.co/go/tools/cmd/staticcheck
  build kubectl "$k8s_version" . k8s.io/kubernetes/cmd/kubectl
  build kube-scheduler "$k8s_version" . k8s.io/kubernetes/cmd/kube-scheduler
  build kube-controller-manager "$k8s_version" . k8s.io/kubernetes/cmd/kube-controller-manager
  build kube-apiserver "$k8s_version" . k8s.io/kubernetes/cmd/kube-apiserver
  build metrics-server "$metrics_version" metrics-server sigs.k8s.io/metrics-server/cmd/metrics-server
  build oras "$oras_version" oras oras.land/oras/cmd/oras
  build_pause
}

# Bash reads a script as it runs; calling main last means an edit to this
# file during a long build cannot change the rest of that build.
main "$@"
