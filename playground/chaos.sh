#!/usr/bin/env bash
# Break the playground on purpose and put it back. Faults go through the chaos runner
# (bloodraven-chaos fault), which writes each one and its undo to the same ledger its
# scenario runs use, so one `recover` undoes everything. dragonfly-status only reads.
set -euo pipefail
# shellcheck source=playground/lib.sh
source "$(dirname "$0")/lib.sh"

usage() {
  cat <<USAGE
Usage: playground/chaos.sh COMMAND [SITE]

Break the playground's failover group on purpose, watch the operator react, then undo.

Commands:
  kill-site SITE          delete the site's MySQL and Dragonfly pods (a primary crash:
                          the operator fails over if SITE is the active site)
  cordon SITE             cordon the site's node and evict its pods (a site that loses
                          its capacity)
  network-partition SITE  cut the site off from everything, control plane included
                          (k3d only: it disconnects the node's container from the network)
  kill-dragonfly SITE     delete only the site's Dragonfly pod
  dragonfly-status        the operator's view of the Dragonfly master, each pod's role
                          and traffic labels, and the app-facing Service's endpoints
  recover                 undo every fault still in effect, newest first
  help                    this text

Sites: $SITES.

Each fault is recorded, with how to undo it, in reports/ledgers/playground.ledger
before it is applied (the chaos runner's fault ledger): 'recover' undoes the faults of
this script and anything a crashed 'make chaos-run' left behind.

Environment:
  KUBECONFIG / the current context   the cluster (k3d-NAME, kind-NAME or minikube)
  BLOODRAVEN_CHAOS                   the bloodraven-chaos binary (default: on PATH,
                                     else 'cargo run -p bloodraven-chaos')
  PLAYGROUND_NAMESPACE               default bloodraven-playground

Examples:
  ./playground/chaos.sh kill-site iad      # then: kubectl -n $PLAYGROUND_NAMESPACE get mysqlfailovergroups -w
  ./playground/chaos.sh cordon pdx
  ./playground/chaos.sh dragonfly-status
  ./playground/chaos.sh recover
USAGE
}

context() {
  kubectl config current-context 2>/dev/null || die "no current kubectl context (is KUBECONFIG set?)"
}

inject() {
  local fault="$1" site="${2:-}"
  [ -n "$site" ] || die "$fault needs a site ($SITES); see --help"
  valid_site "$site"
  chaos_runner --report-dir "$PLAYGROUND_ROOT/reports" fault "$fault: $site" \
    --namespace "$PLAYGROUND_NAMESPACE" --k3d-context "$(context)"
}

dragonfly_status() {
  local service="$PLAYGROUND_GROUP-dragonfly"
  echo "Operator's view (MysqlFailoverGroup $PLAYGROUND_GROUP .status.dragonfly):"
  kube get mysqlfailovergroup "$PLAYGROUND_GROUP" \
    -o jsonpath='  master site: {.status.dragonfly.masterSite}{"\n"}  ready:       {.status.dragonfly.ready}{"\n"}  reason:      {.status.dragonfly.reason}{"\n"}'
  echo
  echo "Dragonfly pods (role and traffic labels):"
  kube get pods -l app.kubernetes.io/name=dragonfly \
    -L shipstream.io/site,shipstream.io/dragonfly-role,shipstream.io/dragonfly-traffic
  echo
  echo "Service $service endpoints (the pod apps reach):"
  kube get endpoints "$service" \
    -o jsonpath='{range .subsets[*]}{range .addresses[*]}  {.targetRef.name} {.ip}{"\n"}{end}{end}'
  local ready
  ready="$(kube get endpoints "$service" -o jsonpath='{.subsets[*].addresses[*].ip}')"
  [ -n "$ready" ] || echo "  (none: no pod is both master and traffic-enabled)"
}

main() {
  local command="${1:-help}"
  case "$command" in
    kill-site | cordon | network-partition | kill-dragonfly) inject "$command" "${2:-}" ;;
    dragonfly-status) dragonfly_status ;;
    recover)
      chaos_runner --report-dir "$PLAYGROUND_ROOT/reports" recover --k3d-context "$(context)"
      ;;
    help | -h | --help) usage ;;
    *)
      usage >&2
      die "unknown command '$command'"
      ;;
  esac
}

main "$@"
