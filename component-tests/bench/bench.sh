#!/bin/sh
# `make bench`: runs the targets and scale examples (release build, simulation) and
# writes docs/bench.md with their figures, the command, the commit and the machine.
# The figures of the run before are kept in the page's "Previous run" section, so a
# change can be judged against them. Benchmarks, not tests: nothing here fails on a
# figure; a run that cannot complete fails.
set -eu
CARGO=${CARGO:-cargo}
SEED=${SEED:-1}
# The release profile by default; BENCH_PROFILE=dev reuses a debug build (the simulated
# figures are the same, memory, CPU and wall time are not).
PROFILE=${BENCH_PROFILE:-release}
BENCH_GROUPS=${BENCH_GROUPS:-"1 10 100"}
out=docs/bench.md
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

$CARGO build --profile "$PROFILE" --quiet -p bloodraven-component-tests --example targets --example scale
start=$(date +%s)
$CARGO run --profile "$PROFILE" --quiet -p bloodraven-component-tests --example targets -- "$SEED" > "$tmp/targets.txt"
# shellcheck disable=SC2086
$CARGO run --profile "$PROFILE" --quiet -p bloodraven-component-tests --example scale -- "$SEED" $BENCH_GROUPS > "$tmp/scale.txt"
wall=$(( $(date +%s) - start ))

# The previous run: the body of the current "Latest run" section.
if [ -f "$out" ]; then
  awk '/^<!-- latest:start -->$/ {on=1; next} /^<!-- latest:end -->$/ {on=0} on' "$out" > "$tmp/previous.md"
else
  : > "$tmp/previous.md"
fi

commit=$(git rev-parse --short HEAD)
dirty=""
if git status --porcelain --untracked-files=no | grep -q .; then
  dirty=" (with uncommitted changes)"
fi
cpus=$(nproc)
memory=$(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
{
  cat <<HEAD
# Benchmarks

Written by \`make bench\` (\`component-tests/bench/bench.sh\`); do not edit by hand. It
runs two examples of \`bloodraven-component-tests\` on the simulation, built with
the release profile unless the run below says otherwise: \`targets\` (issue 5's and 18's targets for one playground group,
with where the emergency RTO and the planned write-unavailability go, step by step) and
\`scale\` (1, 10 and 100 groups under one operator, each with a write workload; the
operator's own heap and CPU are measured by crashing its host at the end). The
simulation is deterministic for a seed: the simulated figures (times, requests, writes)
repeat exactly; memory, CPU and wall time are this machine's and vary. What each
figure means is in the examples' own documentation and in
[The operator](operator.md#measured-targets-simulation).

<!-- latest:start -->
## Latest run

- commit \`$commit\`$dirty, seed $SEED, profile \`$PROFILE\`, $(date -u +%Y-%m-%d)
- machine: $cpus CPUs, $memory memory (shared with other work while it ran), ${wall} s wall
- commands:
  \`cargo run --profile $PROFILE -p bloodraven-component-tests --example targets -- $SEED\` and
  \`cargo run --profile $PROFILE -p bloodraven-component-tests --example scale -- $SEED $BENCH_GROUPS\`

\`\`\`text
HEAD
  cat "$tmp/targets.txt"
  echo
  cat "$tmp/scale.txt"
  echo '```'
  echo '<!-- latest:end -->'
  echo
  echo '## Previous run'
  echo
  if [ -s "$tmp/previous.md" ]; then
    # One level down, so that the page keeps one "Latest run" heading.
    sed 's/^## Latest run$/(was the latest run)/' "$tmp/previous.md"
  else
    echo "None: this is the first run of \`make bench\`."
  fi
} > "$tmp/bench.md"
mv "$tmp/bench.md" "$out"
echo "bench: wrote $out (commit $commit, ${wall} s)"
