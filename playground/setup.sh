#!/usr/bin/env bash
# Bring the playground up on a local multi-node cluster (k3d, kind or minikube): site
# labels on two worker nodes, the images built and loaded, the operator via Helm, then
# the failover group, its backup target, the DNS pipeline and the apps, and a wait
# until the group is Healthy.
set -euo pipefail
# shellcheck source=playground/lib.sh
source "$(dirname "$0")/lib.sh"

usage() {
  cat <<USAGE
Usage: playground/setup.sh [--skip-build] [--timeout SECONDS]

Installs the Bloodraven playground into the cluster of the current kubectl context:

  1. checks the cluster has at least 2 schedulable worker nodes
  2. labels two of them as the sites: $ZONE_LABEL=zone-iad and =zone-pdx
  3. builds the images (operator+sidecar, dns-webhook, counter-app, dashboard) with
     docker or podman (BLOODRAVEN_CONTAINER_RUNTIME=podman forces podman)
  4. loads them into the cluster (k3d image import, kind load, minikube image load)
  5. installs the CRDs, RBAC and operator with Helm (release '$PLAYGROUND_RELEASE' in
     $PLAYGROUND_NAMESPACE)
  6. applies examples/playground*.yaml: the MysqlFailoverGroup 'playground' with two
     MySQL sites and Dragonfly, the MinIO backup target, external-dns with the
     dns-webhook provider, and the apps
  7. waits until the group reports Healthy (default 600 s)

Options:
  --skip-build        load and install the images already built (tag \$PLAYGROUND_TAG,
                      default dev)
  --timeout SECONDS   how long to wait for Healthy
  -h, --help          this text

Create a cluster first, e.g.: k3d cluster create bloodraven --agents 2
Then: kubectl -n $PLAYGROUND_NAMESPACE port-forward svc/dashboard 8091:8091
USAGE
}

# Schedulable, untainted nodes matching a label selector.
schedulable_nodes() {
  kubectl get nodes -l "$1" \
    -o jsonpath='{range .items[*]}{.metadata.name}|{.spec.unschedulable}|{.spec.taints[*].effect}{"\n"}{end}' \
    | awk -F'|' '$1 != "" && $2 != "true" && $3 !~ /NoSchedule/ { print $1 }'
}

# The nodes to become sites: workers first; a control plane that takes pods (minikube's
# first node) only when there are fewer than two workers.
worker_nodes() {
  schedulable_nodes '!node-role.kubernetes.io/control-plane'
  schedulable_nodes 'node-role.kubernetes.io/control-plane'
}

main() {
  local build=true timeout=600
  while [ $# -gt 0 ]; do
    case "$1" in
      --skip-build) build=false ;;
      --timeout)
        timeout="${2:-}"
        shift
        ;;
      -h | --help)
        usage
        return 0
        ;;
      *)
        usage >&2
        die "unknown option '$1'"
        ;;
    esac
    shift
  done
  case "$timeout" in
    '' | *[!0-9]*) die "--timeout '$timeout': expected whole seconds" ;;
  esac
  need kubectl "https://kubernetes.io/docs/tasks/tools/"
  need helm "https://helm.sh/docs/intro/install/"
  local flavour
  flavour="$(cluster_flavour)"
  info "cluster: $(kubectl config current-context) ($flavour)"

  local workers count
  workers="$(worker_nodes)"
  count="$(printf '%s\n' "$workers" | grep -c . || true)"
  [ "$count" -ge 2 ] || die "the cluster has $count schedulable worker node(s); the playground needs 2 (k3d cluster create bloodraven --agents 2)"
  local site node
  local -a sites nodes
  read -r -a sites <<<"$SITES"
  mapfile -t nodes <<<"$workers"
  for i in "${!sites[@]}"; do
    site="${sites[$i]}"
    node="${nodes[$i]}"
    info "labelling node $node as site $site"
    kubectl label node "$node" "$ZONE_LABEL=zone-$site" --overwrite >/dev/null
  done

  local component image
  for component in operator dns-webhook counter dashboard; do
    image="$(image_of "$component"):$PLAYGROUND_TAG"
    if [ "$build" = true ]; then
      build_image "$component"
    fi
    info "loading $image into the cluster"
    load_image "$image"
  done

  info "installing the operator with Helm"
  helm upgrade --install "$PLAYGROUND_RELEASE" "$PLAYGROUND_ROOT/charts/bloodraven" \
    --namespace "$PLAYGROUND_NAMESPACE" --create-namespace \
    --set image.repository="$IMAGE_OPERATOR" --set image.tag="$PLAYGROUND_TAG" \
    --set image.pullPolicy=IfNotPresent --wait --timeout 5m

  local manifest
  for manifest in "$PLAYGROUND_ROOT"/examples/playground*.yaml; do
    info "applying ${manifest#"$PLAYGROUND_ROOT"/}"
    kubectl apply -f "$manifest"
  done

  info "waiting up to ${timeout}s for the group to be Healthy"
  wait_healthy "$timeout"
  kube get mysqlfailovergroups
  cat <<NEXT

The playground is up. Next:
  kubectl -n $PLAYGROUND_NAMESPACE port-forward svc/dashboard 8091:8091    # http://localhost:8091
  kubectl -n $PLAYGROUND_NAMESPACE port-forward svc/counter-app 8090:8090  # http://localhost:8090
  ./playground/chaos.sh kill-site iad
NEXT
}

main "$@"
