#!/usr/bin/env bash
# Drive backup verification by hand: create a MysqlBackupVerification, list them, read
# the Job log of the newest, delete finished ones, show the operator's CronJobs. Talks
# only to the Kubernetes API (kubectl).
set -euo pipefail
# shellcheck source=playground/lib.sh
source "$(dirname "$0")/lib.sh"

usage() {
  cat <<USAGE
Usage: playground/verify-backup.sh COMMAND [ARGS]

Verify that the playground's backups restore: each verification loads the latest
Succeeded backup of a profile into a throw-away mysqld and reports Succeeded or Failed.

Commands:
  run PROFILE [--timeout SECONDS]
                      create a bare MysqlBackupVerification of PROFILE's latest backup
                      (no profile-level sanityCheck: for the scheduled contract use
                      'kubectl create job --from=cronjob/mysql-$PLAYGROUND_GROUP-verify-PROFILE')
                      and wait until it is Succeeded or Failed (default 600 s)
  status              every verification with its backup and phase
  logs                the Job pod log of the newest verification
  cleanup [--failed]  delete Succeeded verifications (with --failed: Failed ones)
  schedule-list       the verification CronJobs the operator materialized
  help                this text

The playground's backup profile is 'minio'. Namespace: \$PLAYGROUND_NAMESPACE
(default bloodraven-playground), group: \$PLAYGROUND_GROUP (default playground).

Examples:
  ./playground/verify-backup.sh run minio
  ./playground/verify-backup.sh status
  ./playground/verify-backup.sh cleanup --failed
USAGE
}

phase_of() {
  kube get mysqlbackupverification "$1" -o jsonpath='{.status.phase}' 2>/dev/null || true
}

run() {
  local profile="${1:-}" timeout=600
  [ -n "$profile" ] || die "run needs a backup profile (the playground's is 'minio'); see --help"
  shift
  while [ $# -gt 0 ]; do
    case "$1" in
      --timeout)
        timeout="${2:-}"
        shift 2 || die "--timeout needs seconds"
        ;;
      *) die "run: unknown option '$1'" ;;
    esac
  done
  case "$timeout" in
    '' | *[!0-9]*) die "--timeout '$timeout': expected whole seconds" ;;
  esac
  local name
  name="$(kube create -o jsonpath='{.metadata.name}' -f - <<MANIFEST
apiVersion: bloodraven.shipstream.io/v1alpha1
kind: MysqlBackupVerification
metadata:
  generateName: $PLAYGROUND_GROUP-$profile-manual-
  namespace: $PLAYGROUND_NAMESPACE
spec:
  group: $PLAYGROUND_GROUP
  profile: $profile
MANIFEST
)"
  info "created MysqlBackupVerification $name; waiting up to ${timeout}s for Succeeded or Failed"
  local waited=0 phase=""
  while [ "$waited" -lt "$timeout" ]; do
    phase="$(phase_of "$name")"
    case "$phase" in
      Succeeded)
        info "$name Succeeded"
        return 0
        ;;
      Failed)
        kube get mysqlbackupverification "$name" -o jsonpath='{.status.message}{"\n"}' >&2
        die "$name Failed (its Pod and PVC are kept: ./playground/verify-backup.sh logs)"
        ;;
    esac
    sleep 2
    waited=$((waited + 2))
  done
  die "$name still ${phase:-without a phase} after ${timeout}s"
}

status() {
  kube get mysqlbackupverifications \
    -o custom-columns='NAME:.metadata.name,GROUP:.spec.group,PROFILE:.spec.profile,BACKUP:.status.backup,PHASE:.status.phase,STARTED:.status.startedAt,COMPLETED:.status.completedAt'
}

newest() {
  kube get mysqlbackupverifications --sort-by=.metadata.creationTimestamp \
    -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}' | tail -n 1
}

logs() {
  local name jobs
  name="$(newest)"
  [ -n "$name" ] || die "no MysqlBackupVerification in $PLAYGROUND_NAMESPACE yet (./playground/verify-backup.sh run minio)"
  # The verification's Job is the one it owns.
  jobs="$(kube get jobs -o jsonpath="{range .items[?(@.metadata.ownerReferences[0].name==\"$name\")]}{.metadata.name}{\"\\n\"}{end}")"
  [ -n "$jobs" ] || die "verification $name ($(phase_of "$name")) has no Job yet"
  local job
  for job in $jobs; do
    info "job/$job (verification $name)"
    kube logs "job/$job" --all-containers=true
  done
}

cleanup() {
  local phase=Succeeded
  case "${1:-}" in
    '') ;;
    --failed) phase=Failed ;;
    *) die "cleanup: unknown option '$1' (only --failed)" ;;
  esac
  local names
  names="$(kube get mysqlbackupverifications \
    -o jsonpath="{range .items[?(@.status.phase==\"$phase\")]}{.metadata.name}{\"\\n\"}{end}")"
  if [ -z "$names" ]; then
    echo "no $phase verifications to delete"
    return 0
  fi
  # shellcheck disable=SC2086 # one name per word
  kube delete mysqlbackupverification $names
}

schedule_list() {
  kube get cronjobs -o custom-columns='NAME:.metadata.name,SCHEDULE:.spec.schedule,SUSPEND:.spec.suspend,LAST:.status.lastScheduleTime' \
    | awk 'NR == 1 || /-verify-/'
}

main() {
  local command="${1:-help}"
  [ $# -eq 0 ] || shift
  case "$command" in
    run) run "$@" ;;
    status) status ;;
    logs) logs ;;
    cleanup) cleanup "$@" ;;
    schedule-list) schedule_list ;;
    help | -h | --help) usage ;;
    *)
      usage >&2
      die "unknown command '$command'"
      ;;
  esac
}

main "$@"
