# shellcheck shell=bash
# Shared by the playground scripts: names, the container runtime, the cluster flavour
# (k3d, kind, minikube) and image loading. Sourced, never run; it changes no state.

PLAYGROUND_NAMESPACE="${PLAYGROUND_NAMESPACE:-bloodraven-playground}"
PLAYGROUND_GROUP="${PLAYGROUND_GROUP:-playground}"
PLAYGROUND_RELEASE="${PLAYGROUND_RELEASE:-bloodraven}"
PLAYGROUND_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The tag the scripts build and load; the manifests and Helm values use it.
PLAYGROUND_TAG="${PLAYGROUND_TAG:-dev}"
# Images built by `make images`, by component name (rebuild.sh's names).
IMAGE_OPERATOR="ghcr.io/shipstream/bloodraven"
IMAGE_COUNTER="ghcr.io/shipstream/bloodraven-counter-app"
IMAGE_DASHBOARD="ghcr.io/shipstream/bloodraven-dashboard"
IMAGE_DNS_WEBHOOK="ghcr.io/shipstream/bloodraven-dns-webhook"
# Node label values of the two sites (examples/playground.yaml's nodeSelectors).
ZONE_LABEL="topology.kubernetes.io/zone"
SITES="iad pdx"

die() {
  echo "$(basename "$0"): $*" >&2
  exit 1
}

info() {
  echo "==> $*"
}

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is not installed ($2)"
}

kube() {
  kubectl -n "$PLAYGROUND_NAMESPACE" "$@"
}

# docker unless BLOODRAVEN_CONTAINER_RUNTIME says otherwise or only podman is there.
container_runtime() {
  if [ -n "${BLOODRAVEN_CONTAINER_RUNTIME:-}" ]; then
    case "$BLOODRAVEN_CONTAINER_RUNTIME" in
      docker | podman) echo "$BLOODRAVEN_CONTAINER_RUNTIME" ;;
      *) die "BLOODRAVEN_CONTAINER_RUNTIME=$BLOODRAVEN_CONTAINER_RUNTIME: expected docker or podman" ;;
    esac
  elif command -v docker >/dev/null 2>&1; then
    echo docker
  elif command -v podman >/dev/null 2>&1; then
    echo podman
  else
    die "neither docker nor podman is installed (one builds the images)"
  fi
}

# k3d, kind or minikube, from BLOODRAVEN_CLUSTER or the current kubectl context.
cluster_flavour() {
  if [ -n "${BLOODRAVEN_CLUSTER:-}" ]; then
    echo "$BLOODRAVEN_CLUSTER"
    return
  fi
  local context
  context="$(kubectl config current-context 2>/dev/null || true)"
  case "$context" in
    k3d-*) echo k3d ;;
    kind-*) echo kind ;;
    minikube*) echo minikube ;;
    *) die "cannot tell k3d, kind or minikube from the kubectl context '$context'; set BLOODRAVEN_CLUSTER" ;;
  esac
}

# The cluster's name for the loader: k3d-bloodraven -> bloodraven, kind-x -> x.
cluster_name() {
  local context
  context="$(kubectl config current-context 2>/dev/null || true)"
  case "$context" in
    k3d-*) echo "${context#k3d-}" ;;
    kind-*) echo "${context#kind-}" ;;
    *) echo "$context" ;;
  esac
}

# Puts a locally built image into the cluster's nodes.
load_image() {
  local image="$1" runtime flavour name archive
  runtime="$(container_runtime)"
  flavour="$(cluster_flavour)"
  name="$(cluster_name)"
  case "$flavour" in
    k3d)
      if [ "$runtime" = docker ]; then
        k3d image import -c "$name" "$image"
      else
        archive="$(mktemp --suffix=.tar)"
        podman save -o "$archive" "$image"
        k3d image import -c "$name" "$archive"
        rm -f "$archive"
      fi
      ;;
    kind)
      if [ "$runtime" = docker ]; then
        kind load docker-image --name "$name" "$image"
      else
        archive="$(mktemp --suffix=.tar)"
        podman save -o "$archive" "$image"
        kind load image-archive --name "$name" "$archive"
        rm -f "$archive"
      fi
      ;;
    minikube)
      if [ "$runtime" = docker ]; then
        minikube image load "$image"
      else
        archive="$(mktemp --suffix=.tar)"
        podman save -o "$archive" "$image"
        minikube image load "$archive"
        rm -f "$archive"
      fi
      ;;
    *) die "unknown cluster flavour $flavour (k3d, kind or minikube)" ;;
  esac
}

# The image repository of a component (rebuild.sh's names; the sidecar is the
# operator's image).
image_of() {
  case "$1" in
    operator | sidecar) echo "$IMAGE_OPERATOR" ;;
    counter) echo "$IMAGE_COUNTER" ;;
    dashboard) echo "$IMAGE_DASHBOARD" ;;
    dns-webhook) echo "$IMAGE_DNS_WEBHOOK" ;;
    *) die "unknown component '$1' (operator, sidecar, counter, dashboard, dns-webhook)" ;;
  esac
}

# Builds one component's image as `make images` does, tagged $PLAYGROUND_TAG.
build_image() {
  local component="$1" image target
  image="$(image_of "$component")"
  case "$component" in
    sidecar) target=operator ;;
    counter) target=counter-app ;;
    *) target="$component" ;;
  esac
  info "building $image:$PLAYGROUND_TAG with $(container_runtime)"
  make -C "$PLAYGROUND_ROOT" --no-print-directory image-"$target" \
    CONTAINER_RUNTIME="$(container_runtime)" IMAGE_TAG="$PLAYGROUND_TAG"
}

# bloodraven-chaos: $BLOODRAVEN_CHAOS, the one on PATH, or cargo from the tree.
chaos_runner() {
  if [ -n "${BLOODRAVEN_CHAOS:-}" ]; then
    "$BLOODRAVEN_CHAOS" "$@"
  elif command -v bloodraven-chaos >/dev/null 2>&1; then
    bloodraven-chaos "$@"
  else
    (cd "$PLAYGROUND_ROOT" && cargo run --quiet -p bloodraven-chaos -- "$@")
  fi
}

# The node of a site, by its zone label (node/NAME).
site_nodes() {
  kubectl get nodes -l "$ZONE_LABEL=zone-$1" -o name
}

valid_site() {
  case " $SITES " in
    *" $1 "*) ;;
    *) die "unknown site '$1' (sites: $SITES)" ;;
  esac
}

# Waits until the group reports Healthy (a poll, not `kubectl wait --for=jsonpath`,
# which kubectl before 1.23 lacks): wait_healthy SECONDS.
wait_healthy() {
  local timeout="$1" waited=0 health=""
  while [ "$waited" -lt "$timeout" ]; do
    health="$(kube get mysqlfailovergroup "$PLAYGROUND_GROUP" -o jsonpath='{.status.health}' 2>/dev/null || true)"
    if [ "$health" = Healthy ]; then
      info "$PLAYGROUND_GROUP is Healthy after ${waited}s"
      return 0
    fi
    sleep 2
    waited=$((waited + 2))
  done
  die "$PLAYGROUND_GROUP is ${health:-without a health} after ${timeout}s (kubectl -n $PLAYGROUND_NAMESPACE describe mysqlfailovergroup $PLAYGROUND_GROUP)"
}
