#!/usr/bin/env bash
# An OAuth2 access token by the client-credentials flow, for a relay or a
# mailbox that takes XOAUTH2 instead of a password (Exchange Online, Google).
#
# Environment: TOKEN_URL (the identity provider's token endpoint), SCOPE,
# CLIENT_ID and CLIENT_SECRET; GITHUB_OUTPUT, where the token is written as
# the step's output `token`, masked in the log. A token lives about an hour:
# the workflows fetch one for each run.
#
# Usage: oauth-token.sh WHAT-WAS-NOT-DONE  (said in the error when no token
# comes back, e.g. "nothing was sent")
set -euo pipefail

if ! response=$(curl --silent --show-error --fail --max-time 60 \
    --data-urlencode grant_type=client_credentials \
    --data-urlencode "client_id=$CLIENT_ID" \
    --data-urlencode "client_secret=$CLIENT_SECRET" \
    --data-urlencode "scope=$SCOPE" "$TOKEN_URL"); then
  echo "::error::no OAuth2 token from $TOKEN_URL; $1"
  exit 1
fi
token=$(printf '%s' "$response" | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
echo "::add-mask::$token"
echo "token=$token" >> "$GITHUB_OUTPUT"
