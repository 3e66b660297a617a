#!/usr/bin/env bash
# Builds a real etcd, kube-apiserver and kubectl from the Go module proxy into the tool cache, for
# the controller-mode tests (envtest points KUBEBUILDER_ASSETS at the folder this prints; the
# migration guide's kubectl commands run with the kubectl there).
#
#   test/infra/kube-tools.sh          build what is missing, print the assets folder
#
# Neither builds with `go install` (both modules carry replace directives), so each is built from a
# small wrapper module outside the clone: etcd from its server module, kube-apiserver from
# k8s.io/kubernetes with one replace per staging module, generated from upstream's own go.mod.
# Cold: about 1 minute for etcd and 4 for kube-apiserver on 2 cores; cached afterwards.
set -euo pipefail

ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
KUBE_VERSION=${KUBE_VERSION:-v1.34.4}
GO=${GO:-go}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/switchyard/tools
ASSETS=$CACHE/kube-$KUBE_VERSION-etcd-$ETCD_VERSION
log() { echo "kube-tools: $*" >&2; }

build_etcd() {
	local src=$ASSETS/src/etcd
	mkdir -p "$src"
	cat >"$src/tools.go" <<'EOF'
//go:build tools

// Package tools pins etcd's server module so this wrapper can build its binary.
package tools

import _ "go.etcd.io/etcd/server/v3"
EOF
	(
		cd "$src"
		[ -f go.mod ] || "$GO" mod init etcdwrapper >/dev/null 2>&1
		"$GO" get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>&1
		"$GO" mod tidy >/dev/null 2>&1 || true
		CGO_ENABLED=0 "$GO" build -trimpath -o "$ASSETS/etcd.tmp" go.etcd.io/etcd/server/v3
	)
	mv "$ASSETS/etcd.tmp" "$ASSETS/etcd"
}

build_apiserver() {
	local src=$ASSETS/src/kube-apiserver minor=${KUBE_VERSION#v1.}
	local staging=v0.$minor upstream
	mkdir -p "$src"
	upstream=$(cd "$src" && "$GO" mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
	cat >"$src/tools.go" <<'EOF'
//go:build tools

// Package tools pins k8s.io/kubernetes so this wrapper can build kube-apiserver and kubectl.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
EOF
	{
		echo "module kubeapiserverwrapper"
		echo
		echo "go 1.24"
		echo
		echo "require k8s.io/kubernetes $KUBE_VERSION"
		echo
		echo "replace ("
		# Every staging module at its published version, as upstream's go.mod lists them; the two
		# samples are not published and nothing in the server needs them.
		sed -n 's#^\t\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\1#p' "$upstream" |
			grep -v -e sample-cli-plugin -e sample-controller |
			while read -r mod; do printf '\t%s => %s %s\n' "$mod" "$mod" "$staging"; done
		echo ")"
	} >"$src/go.mod"
	(
		cd "$src"
		"$GO" mod tidy >/dev/null 2>&1
		local pkg=k8s.io/component-base/version
		CGO_ENABLED=0 "$GO" build -trimpath -o "$ASSETS/kube-apiserver.tmp" \
			-ldflags "-s -w -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=${minor%%.*} -X $pkg.gitTreeState=clean" \
			k8s.io/kubernetes/cmd/kube-apiserver
	)
	mv "$ASSETS/kube-apiserver.tmp" "$ASSETS/kube-apiserver"
}

# kubectl comes from the same wrapper module as kube-apiserver (same replaces, same version).
build_kubectl() {
	local src=$ASSETS/src/kube-apiserver minor=${KUBE_VERSION#v1.}
	[ -f "$src/go.mod" ] && grep -q 'cmd/kubectl' "$src/tools.go" || build_apiserver
	(
		cd "$src"
		local pkg=k8s.io/component-base/version
		CGO_ENABLED=0 "$GO" build -trimpath -o "$ASSETS/kubectl.tmp" \
			-ldflags "-s -w -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=${minor%%.*} -X $pkg.gitTreeState=clean" \
			k8s.io/kubernetes/cmd/kubectl
	)
	mv "$ASSETS/kubectl.tmp" "$ASSETS/kubectl"
}

mkdir -p "$ASSETS"
if [ ! -x "$ASSETS/etcd" ]; then
	log "building etcd $ETCD_VERSION (about 1 minute, once)"
	build_etcd
fi
if [ ! -x "$ASSETS/kube-apiserver" ]; then
	log "building kube-apiserver $KUBE_VERSION (about 4 minutes, once)"
	build_apiserver
fi
if [ ! -x "$ASSETS/kubectl" ]; then
	log "building kubectl $KUBE_VERSION (about 2 minutes, once)"
	build_kubectl
fi
echo "$ASSETS"
