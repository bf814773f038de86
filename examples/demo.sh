#!/bin/sh
# `make demo`: the whole flow on the bundled example requests, in build/demo
# (a throwaway copy, so the examples themselves never change and no real
# dispatch can pick them up). No SMTP server is needed: the outbox is a Maildir.
set -eu
BIN=${1:-.venv/bin}
MAILINGS="$BIN/mailings"
SUBMITTED=2027-01-11
NOW=2027-02-10T10:05

rm -rf build/demo
mkdir -p build/demo/pr
cp -R examples/mailings examples/lists build/demo/pr/

step() { printf '\n== %s\n' "$*"; }

step "When is the earliest dispatch for a request submitted on $SUBMITTED?"
"$MAILINGS" earliest --root build/demo/pr --submitted "$SUBMITTED"

step "A pull request with four requests: CI checks each against the policy"
"$MAILINGS" check --root build/demo/pr --submitted "$SUBMITTED" || true

step "Reviewers merge the requests that pass; the main branch holds only those"
mkdir -p build/demo/main/mailings
cp -R build/demo/pr/lists build/demo/main/
for dir in build/demo/pr/mailings/*/; do
    id=$(basename "$dir")
    if "$MAILINGS" check --root build/demo/pr --submitted "$SUBMITTED" "$dir" >/dev/null; then
        cp -R "$dir" "build/demo/main/mailings/$id"
        echo "merged   $id"
    else
        echo "rejected $id"
    fi
done

if "$MAILINGS" status --help >/dev/null 2>&1; then
    export MAILINGS_LIST_ALL_EMPLOYEES=build/demo/main/lists/all-employees.txt
    # A throwaway log key, made for this demo and forgotten with it: the real dispatch job
    # refuses to send without its own MAILINGS_LOG_KEY secret (README: the log key).
    if [ -z "${MAILINGS_LOG_KEY:-}" ]; then
        MAILINGS_LOG_KEY=demo-only-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
        export MAILINGS_LOG_KEY
    fi
    step "The scheduled job at $NOW: status before sending"
    "$MAILINGS" status --root build/demo/main --now "$NOW"

    step "The scheduled job sends what is due (into the Maildir build/demo/outbox)"
    "$MAILINGS" send --root build/demo/main --now "$NOW" --outbox build/demo/outbox

    step "Status after sending"
    "$MAILINGS" status --root build/demo/main --now "$NOW"

    step "The next scheduled run finds nothing left to send"
    "$MAILINGS" send --root build/demo/main --now 2027-02-10T10:20 --outbox build/demo/outbox

    step "The first lines of the message as a recipient gets it"
    "$MAILINGS" preview --root build/demo/main --now "$NOW" 2027-02-10-travel-booking | head -n 24

    step "What landed in the outbox"
    for box in new cur; do
        [ -d "build/demo/outbox/$box" ] && ls "build/demo/outbox/$box" | wc -l | xargs printf "%s messages in build/demo/outbox/$box\n"
    done
    echo "Open build/demo/outbox with any Maildir-capable mail client, or: mailings preview --root build/demo/main ID"
fi
