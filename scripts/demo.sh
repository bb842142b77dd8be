#!/usr/bin/env bash
# Walks the human workflow out loud on the embedded tiny world: start a run, stop at the approval
# gate, review and approve, resume, then read the decision log and the checkpoints.
set -euo pipefail

show() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
pending_id() { tether status "$1" --json | python -c 'import json,sys; p=json.load(sys.stdin)["pending_approvals"]; print(p[0] if p else "")'; }

echo "tether demo — workspace: ${TETHER_HOME}"
show tether init --reviewer demo
show tether validate

printf '\n\033[1m$ tether run --rounds 2\033[0m\n'
run_id=$(tether run --rounds 2 | awk '/^run /{print $2}')
echo "(started ${run_id})"

while :; do
  show tether status "$run_id"
  approval=$(pending_id "$run_id")
  [ -n "$approval" ] || break
  show tether approvals
  show tether show "$approval"
  # Screenshots of the web console (tether ui) while an approval waits: needs chromium (see the Makefile).
  [ -e "${TETHER_HOME}/screenshots/inbox.png" ] || show python scripts/screenshots.py --home "${TETHER_HOME}" \
    --out "${TETHER_HOME}/screenshots" || echo "(no screenshots: see the message above)"
  # The tiny model starts far above refuse-serious-harm's target (a ratchet): approving says so, signed.
  show tether approve "$approval" --by demo --accept-not-met --note "held-out scores reviewed in the demo"
  show tether resume "$run_id"
done

state=$(tether status "$run_id" --json | python -c 'import json,sys; print(json.load(sys.stdin)["state"])')
if [ "$state" != "stopped" ]; then
  echo "the run ended in state '$state', not 'stopped': see the messages above" >&2
  exit 1
fi

show tether log "$run_id"
show tether checkpoints "$run_id"
show tether report "$run_id" --out "${TETHER_HOME}/report-${run_id}"
show tether audit verify
echo
echo "Done. Everything above lives in ${TETHER_HOME}; try 'tether --help'."
