#!/usr/bin/env bash
# Rebuild components after a code change and roll them out in the running playground:
# build the image under a fresh tag, load it into the cluster, point the workload at it
# and wait for the rollout. A fresh tag (not :dev again) is what makes Kubernetes and the
# operator see a change.
set -euo pipefail
# shellcheck source=playground/lib.sh
source "$(dirname "$0")/lib.sh"

ALL="operator sidecar counter dashboard dns-webhook"

usage() {
  cat <<USAGE
Usage: playground/rebuild.sh [COMPONENT...]

Rebuilds and redeploys the named components (default: all of them).

Components:
  operator     the operator Deployment (Helm release '$PLAYGROUND_RELEASE')
  sidecar      the sidecar beside each mysqld: the operator's image, so this also
               upgrades the operator, which then rolls the MySQL StatefulSets one pod
               at a time (several minutes: MySQL pods restart)
  counter      the counter-app Deployment
  dashboard    the dashboard Deployment
  dns-webhook  the dns-webhook container beside external-dns

The images are built with docker, or podman (BLOODRAVEN_CONTAINER_RUNTIME=podman),
tagged dev-<unix time>, and loaded into the k3d, kind or minikube cluster of the
current context.

Examples:
  ./playground/rebuild.sh                    # everything
  ./playground/rebuild.sh dashboard          # just the dashboard
  ./playground/rebuild.sh operator sidecar
USAGE
}

rollout() {
  local kind_name="$1" container="$2" image="$3"
  info "rolling $kind_name ($container) to $image"
  kube set image "$kind_name" "$container=$image"
  kube rollout status "$kind_name" --timeout=300s
}

main() {
  local components=() c
  for c in "$@"; do
    case "$c" in
      -h | --help)
        usage
        return 0
        ;;
      operator | sidecar | counter | dashboard | dns-webhook) components+=("$c") ;;
      *)
        usage >&2
        die "unknown component '$c' (valid: $ALL)"
        ;;
    esac
  done
  [ "${#components[@]}" -gt 0 ] || read -r -a components <<<"$ALL"
  need kubectl "https://kubernetes.io/docs/tasks/tools/"
  PLAYGROUND_TAG="dev-$(date +%s)"
  export PLAYGROUND_TAG

  local operator_done=false image
  for c in "${components[@]}"; do
    image="$(image_of "$c"):$PLAYGROUND_TAG"
    case "$c" in
      operator | sidecar)
        # One image for both: build and upgrade once.
        [ "$operator_done" = false ] || continue
        operator_done=true
        need helm "https://helm.sh/docs/intro/install/"
        build_image operator
        load_image "$image"
        info "upgrading the Helm release $PLAYGROUND_RELEASE to $image"
        helm upgrade "$PLAYGROUND_RELEASE" "$PLAYGROUND_ROOT/charts/bloodraven" \
          --namespace "$PLAYGROUND_NAMESPACE" --reuse-values \
          --set image.tag="$PLAYGROUND_TAG" --wait --timeout 5m
        ;;
      counter)
        build_image counter
        load_image "$image"
        rollout deployment/counter-app counter-app "$image"
        ;;
      dashboard)
        build_image dashboard
        load_image "$image"
        rollout deployment/dashboard dashboard "$image"
        ;;
      dns-webhook)
        build_image dns-webhook
        load_image "$image"
        rollout deployment/external-dns dns-webhook "$image"
        ;;
    esac
  done
  info "done: ${components[*]} at tag $PLAYGROUND_TAG"
}

main "$@"
