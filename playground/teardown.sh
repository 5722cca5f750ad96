#!/usr/bin/env bash
# Remove the playground from the cluster: the failover group (so the operator cleans up
# its children), the Helm release, the namespace, the CRDs and the site labels setup.sh
# put on the nodes. The cluster itself stays, ready for another setup.sh.
set -euo pipefail
# shellcheck source=playground/lib.sh
source "$(dirname "$0")/lib.sh"

usage() {
  cat <<USAGE
Usage: playground/teardown.sh [--keep-crds] [--yes]

Deletes, in this order:
  1. the MysqlFailoverGroups in $PLAYGROUND_NAMESPACE (the operator removes their
     StatefulSets, Services, DNSEndpoints, CronJobs), waiting for them to go
  2. the Helm release '$PLAYGROUND_RELEASE' (if helm is installed and the release exists)
  3. the namespace $PLAYGROUND_NAMESPACE and everything left in it (PVCs included:
     the MySQL data is gone)
  4. the Bloodraven CRDs (unless --keep-crds) — every MysqlFailoverGroup, backup and
     restore object in any namespace goes with them
  5. the site labels ($ZONE_LABEL=zone-iad / zone-pdx) on the nodes

Your k3d/kind/minikube cluster is left running; ./playground/setup.sh starts over.

Options:
  --keep-crds   leave the CRDs installed (other namespaces may use them)
  --yes         do not ask for confirmation
  -h, --help    this text
USAGE
}

CRDS="mysqlfailovergroups.bloodraven.shipstream.io mysqlbackups.bloodraven.shipstream.io mysqlbackupverifications.bloodraven.shipstream.io mysqlrestores.bloodraven.shipstream.io"

main() {
  local keep_crds=false yes=false
  while [ $# -gt 0 ]; do
    case "$1" in
      --keep-crds) keep_crds=true ;;
      --yes | -y) yes=true ;;
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
  if [ "$yes" != true ]; then
    [ -t 0 ] || die "not a terminal: pass --yes to confirm"
    read -r -p "Delete the playground (namespace $PLAYGROUND_NAMESPACE and its MySQL data) from context $(kubectl config current-context)? [y/N] " answer
    case "$answer" in
      y | Y | yes) ;;
      *) die "nothing deleted" ;;
    esac
  fi

  if kubectl get namespace "$PLAYGROUND_NAMESPACE" >/dev/null 2>&1; then
    info "deleting the failover groups in $PLAYGROUND_NAMESPACE"
    kube delete mysqlfailovergroups --all --wait=true --timeout=120s --ignore-not-found || true
  fi

  if command -v helm >/dev/null 2>&1 && helm status "$PLAYGROUND_RELEASE" -n "$PLAYGROUND_NAMESPACE" >/dev/null 2>&1; then
    info "uninstalling the Helm release $PLAYGROUND_RELEASE"
    helm uninstall "$PLAYGROUND_RELEASE" -n "$PLAYGROUND_NAMESPACE" --wait
  else
    info "no Helm release $PLAYGROUND_RELEASE in $PLAYGROUND_NAMESPACE (or no helm): skipped"
  fi

  info "deleting the namespace $PLAYGROUND_NAMESPACE"
  kubectl delete namespace "$PLAYGROUND_NAMESPACE" --ignore-not-found --wait=true --timeout=300s

  if [ "$keep_crds" != true ]; then
    info "deleting the Bloodraven CRDs"
    # shellcheck disable=SC2086 # one CRD name per word
    kubectl delete crd $CRDS --ignore-not-found
  fi

  local site node
  for site in $SITES; do
    for node in $(site_nodes "$site"); do
      info "removing the site label from $node"
      kubectl label "$node" "$ZONE_LABEL-" >/dev/null
    done
  done
  info "playground removed; the cluster is still running"
}

main "$@"
