#!/usr/bin/env bash
# Runs every fuzz target (the `fuzz_*` tests beside each parser and the session core)
# for longer than `cargo test` does: MINUTES in all, shared among the targets by weight
# (the session core, and the cheapest parsers that give most of the volume, get four
# shares each; the others one), one target at a time, at the lowest CPU priority.
# Prints how many inputs each target ran.
#
#   integration/fuzz.sh MINUTES [FILTER]      e.g. integration/fuzz.sh 30 session
#
# Builds with the `fuzz` profile (release speed, with overflow checks and debug
# assertions in pgsluice's own code); FUZZ_PROFILE=release skips that build. A failure
# prints the shrunk input and the seed that replays it (PROPTEST_RNG_SEED); the script
# goes on with the other targets and exits non-zero at the end. PROPTEST_CASES sets the
# batch size (each target's default otherwise): a target runs batches with fresh seeds
# until its share of the time is up.
set -euo pipefail

minutes=${1:?usage: integration/fuzz.sh MINUTES [FILTER]}
filter=${2:-}
profile=${FUZZ_PROFILE:-fuzz}
cd "$(dirname "$0")/.."

build=$(nice -n 19 cargo test --profile "$profile" --lib --no-run 2>&1) || {
    echo "$build" >&2
    exit 1
}
bin=$(echo "$build" | sed -n 's/.*Executable unittests src\/lib.rs (\(.*\))$/\1/p' | tail -1)
[ -x "$bin" ] || { echo "no test binary found in:" >&2; echo "$build" >&2; exit 1; }

mapfile -t targets < <("$bin" --list 2>/dev/null | sed -n 's/^\(.*::fuzz_[a-z_]*\): test$/\1/p' | grep -- "$filter" || true)
[ ${#targets[@]} -gt 0 ] || { echo "no fuzz target matches '$filter'" >&2; exit 1; }

weight() {
    case "$1" in
    # The session core: slow per input, and the most to find.
    *session_core | *session_routed | *session_garbage) echo 4 ;;
    # Cheap parsers: many inputs per second, so most of the volume.
    *fuzz_framing | *fuzz_startup_packet | *fuzz_set_pgsluice | *fuzz_admin_command | \
        *fuzz_cstr_and_error_fields | *fuzz_lsn_text | *fuzz_secrets) echo 4 ;;
    *) echo 1 ;;
    esac
}
total_weight=0
for t in "${targets[@]}"; do total_weight=$((total_weight + $(weight "$t"))); done

echo "fuzzing ${#targets[@]} targets for $minutes min ($profile profile, $bin)"
log=$(mktemp -t pgsluice-fuzz.XXXXXX)
failed=()
total=0
printf '%-52s %12s %8s %10s\n' target inputs seconds inputs/s
for t in "${targets[@]}"; do
    secs=$(awk -v m="$minutes" -v w="$(weight "$t")" -v tw="$total_weight" 'BEGIN { printf "%.1f", m * 60 * w / tw }')
    if PGSLUICE_FUZZ_SECONDS=$secs nice -n 19 "$bin" --exact "$t" --nocapture --test-threads 1 >"$log" 2>&1; then
        line=$(grep -a '^fuzz [a-z_]*: [0-9]* inputs in' "$log" | tail -1)
        inputs=$(echo "$line" | awk '{print $3}')
        took=$(echo "$line" | awk '{print $6}')
        rate=$(awk -v n="$inputs" -v s="$took" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')
        printf '%-52s %12s %8s %10s\n' "$t" "$inputs" "$took" "$rate"
        total=$((total + inputs))
    else
        printf '%-52s %12s\n' "$t" FAILED
        failed+=("$t")
        grep -a -v '^\s*[0-9]*: \|^note: \|stack backtrace' "$log" | tail -40
    fi
done
rm -f "$log"
printf '%-52s %12s\n' total "$total"
if [ ${#failed[@]} -gt 0 ]; then
    echo "failed: ${failed[*]}" >&2
    exit 1
fi
