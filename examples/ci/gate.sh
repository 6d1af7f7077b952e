#!/usr/bin/env bash
# A CI gate for a model repository: run a suite (a deterministic subset), compare it with the stored baseline,
# write the report, and exit with the comparison's verdict: 0 no regression, 1 regression, 2 cannot compare
# (a different suite, data or settings: refresh the baseline), anything else a broken run.
#
# Settings (environment): SUITE, MODEL, MODEL_ARGS, LIMIT, TASKS (space-separated globs), BASELINE, OUT;
# FACEBENCH_CI_INSTALL=1 installs facebench first (a fresh CI machine); FACEBENCH_CACHE keeps the prediction
# store between CI runs when your CI caches that folder.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
SUITE="${SUITE:-$repo/suites/demo.yaml}"
MODEL="${MODEL:-synth-cnn}"
MODEL_ARGS="${MODEL_ARGS:-}"
LIMIT="${LIMIT:-300}"
TASKS="${TASKS:-synth-closed-set synth-open-set-compound}"
BASELINE="${BASELINE:-$here/baseline-demo.json}"
OUT="${OUT:-ci-out}"

if [ "${FACEBENCH_CI_INSTALL:-0}" = 1 ]; then
    python -m pip install --quiet torch==2.13.0 && python -m pip install --quiet -e "$repo" || exit 3
fi
task_flags=()
for t in $TASKS; do task_flags+=(--tasks "$t"); done
model_flags=(--model "$MODEL")
[ -n "$MODEL_ARGS" ] && model_flags+=(--model-args "$MODEL_ARGS")

facebench run "$SUITE" "${model_flags[@]}" --limit "$LIMIT" "${task_flags[@]}" --out "$OUT/run" --force \
    --no-progress --quiet --no-figures
status=$?
if [ "$status" -ne 0 ]; then
    echo "gate: the run failed (exit $status); nothing was compared" >&2
    exit "$status"
fi
facebench compare "$OUT/run" --baseline "$BASELINE" --junit "$OUT/compare.xml" --json "$OUT/compare.json"
verdict=$?
facebench report "$OUT/run" --out "$OUT/report" --no-figures >/dev/null || echo "gate: the report failed" >&2
case "$verdict" in
    0) echo "gate: no regression against $BASELINE" ;;
    1) echo "gate: REGRESSION against $BASELINE (see $OUT/compare.json)" >&2 ;;
    *) echo "gate: cannot compare with $BASELINE (exit $verdict): refresh it with facebench baseline" >&2 ;;
esac
exit "$verdict"
