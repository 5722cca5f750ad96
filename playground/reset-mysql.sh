#!/usr/bin/env bash
# Destructive lab reset: delete the failover group and its MySQL volumes, then create
# the group again from examples/playground.yaml, so both sites start empty. Not a
# production recovery procedure: every row in the playground's MySQL is lost.
set -euo pipefail
# shellcheck source=playground/lib.sh
source "$(dirname "$0")/lib.sh"

usage() {
  cat <<USAGE
Usage: playground/reset-mysql.sh [--yes] [--timeout SECONDS]

Starts the playground's MySQL over, empty:
  1. deletes the MysqlFailoverGroup '$PLAYGROUND_GROUP' (the operator removes its
     StatefulSets, Services and DNSEndpoint) and waits for its MySQL pods to go
  2. deletes the MySQL PersistentVolumeClaims of the group (the data)
  3. applies examples/playground.yaml again and waits until the group is Healthy

Use it when the lab is beyond repair (e.g. a divergence you do not want to reclone);
try './playground/chaos.sh recover' first. In production you would reclone a site
(bloodraven.shipstream.io/reclone-site), never wipe both.

Options:
  --yes               do not ask for confirmation
  --timeout SECONDS   how long to wait for each step (default 600)
  -h, --help          this text
USAGE
}

main() {
  local yes=false timeout=600
  while [ $# -gt 0 ]; do
    case "$1" in
      --yes | -y) yes=true ;;
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
  if [ "$yes" != true ]; then
    [ -t 0 ] || die "not a terminal: pass --yes to confirm"
    read -r -p "Wipe the MySQL data of $PLAYGROUND_NAMESPACE/$PLAYGROUND_GROUP? [y/N] " answer
    case "$answer" in
      y | Y | yes) ;;
      *) die "nothing deleted" ;;
    esac
  fi
  local selector="app.kubernetes.io/name=mysql,app.kubernetes.io/instance=$PLAYGROUND_GROUP"
  info "deleting the MysqlFailoverGroup $PLAYGROUND_GROUP"
  kube delete mysqlfailovergroup "$PLAYGROUND_GROUP" --ignore-not-found --wait=true --timeout="${timeout}s"
  info "waiting for the MySQL pods to go"
  kube wait --for=delete pod -l "$selector" --timeout="${timeout}s" 2>/dev/null || true
  info "deleting the MySQL volumes"
  kube delete pvc -l "$selector" --ignore-not-found --wait=true --timeout="${timeout}s"
  info "creating the group again"
  kubectl apply -f "$PLAYGROUND_ROOT/examples/playground.yaml"
  wait_healthy "$timeout"
  kube get mysqlfailovergroups
}

main "$@"
