#!/usr/bin/env bash
# The release pipeline of docs/pipeline.py with the command line: `robustness remote` for the
# service, curl for the signing secret, and pipeline.py's receiver for the signed callbacks.
#
#   ROBUSTNESS_URL=http://127.0.0.1:8000 ROBUSTNESS_API_KEY=... \
#       bash docs/pipeline.sh RELEASE.safetensors CANDIDATE.safetensors META.json
#
# The service must allow callbacks to this machine (ROBUSTNESS_CALLBACK_HOSTS=127.0.0.1).
# Exits with the candidate's `robustness remote` code: 0 its gate passed, 1 it failed.
set -euo pipefail
RELEASE=$1 CANDIDATE=$2 META=$3
HERE=$(cd "$(dirname "$0")" && pwd)
R=${ROBUSTNESS:-robustness}
PY=${PYTHON:-python3}
WORK=$(mktemp -d)
RECEIVER=
trap '[ -n "$RECEIVER" ] && kill $RECEIVER; rm -rf "$WORK"' EXIT

SECRET=$(curl -sf -H "Authorization: Bearer $ROBUSTNESS_API_KEY" \
    "$ROBUSTNESS_URL/v1/webhooks/secret" | $PY -c 'import json, sys; print(json.load(sys.stdin)["secret"])')
$PY "$HERE/pipeline.py" receive "$SECRET" "$WORK/hook" > "$WORK/callbacks" &
RECEIVER=$!
until [ -s "$WORK/hook" ]; do sleep 0.1; done

# spec NAME [BASELINE TOLERANCE]: an audit spec (with a gate against BASELINE) in $WORK/NAME.json
spec() {
    $PY - "$WORK/$1.json" "$(cat "$WORK/hook")" "${2:-}" "${3:-0}" <<'PYTHON'
import json, sys
path, hook, baseline, tolerance = sys.argv[1:]
spec = {"dataset": {"name": "digits", "split": "test", "n": 200},
        "attacks": [{"name": "fgsm"}, {"name": "pgd", "steps": 20}],
        "epsilons": [0.0, 0.05, 0.1], "seed": 0, "callback_url": hook}
if baseline:
    spec["gate"] = [{"metric": "accuracy", "attack": "pgd", "epsilon": 0.1, "op": ">=",
                     "baseline": baseline, "tolerance": float(tolerance)}]
json.dump(spec, open(path, "w"))
PYTHON
}
job_id() { $PY -c 'import json, sys; print(json.loads(sys.stdin.read().splitlines()[-1])["id"])'; }
# callback JOB: wait for JOB's verified callback
callback() {
    until grep -q "\"id\": \"$1\"" "$WORK/callbacks"; do sleep 0.2; done
    echo "signed callback of $1 verified"
}

release=$($R remote -q upload --model "$RELEASE" --metadata "$META" | job_id)
candidate=$($R remote -q upload --model "$CANDIDATE" --metadata "$META" | job_id)
echo "uploaded release $release and candidate $candidate"

spec first
first=$($R remote -q audit --model-id "$release" --spec "$WORK/first.json" --wait | job_id)
callback "$first"
spec baseline "$first" 0
baseline=$($R remote -q audit --model-id "$release" --spec "$WORK/baseline.json" --wait | job_id)
callback "$baseline"
echo "release against its last audit: gate passed"
spec candidate "$baseline" 0.05
code=0
audited=$($R remote -q audit --model-id "$candidate" --spec "$WORK/candidate.json" --wait \
    --out "$WORK/candidate-report.json" | job_id) || code=$?
callback "$audited"
echo "candidate against the release: gate $([ $code = 0 ] && echo passed || echo FAILED) (exit $code)"
verdict=$($R remote -q compare "$baseline" "$audited" --tolerance 0.05 \
    | $PY -c 'import json, sys; print(json.load(sys.stdin)["verdict"])') || true
echo "candidate against release: $verdict"
curl -sf -X DELETE -H "Authorization: Bearer $ROBUSTNESS_API_KEY" \
    "$ROBUSTNESS_URL/v1/audits/$audited"
echo "deleted $audited: its report now answers $(curl -s -o /dev/null -w '%{http_code}' \
    -H "Authorization: Bearer $ROBUSTNESS_API_KEY" "$ROBUSTNESS_URL/v1/audits/$audited/report")"
exit $code
