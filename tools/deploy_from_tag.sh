#!/usr/bin/env bash
# Deploy what a production tag (`<model>#production#<N>`) names; CI's deploy-production workflow runs this.
# Refuses when the registry does not verify, when the tag is not the production version's latest
# assignment (an old tag pushed again deploys nothing), or when a downloaded file differs from the record.
# Usage: tools/deploy_from_tag.sh <tag> <out-folder>; DEPLOY_COMMAND gets the folder as its last argument.
set -euo pipefail
tag="${1:?usage: deploy_from_tag.sh <model#production#N> <out-folder>}"
out="${2:?usage: deploy_from_tag.sh <model#production#N> <out-folder>}"
model="${tag%%#*}"
mkdir -p "$out"
edgekit registry verify ${EDGEKIT_CHECKPOINT:+--checkpoint "$EDGEKIT_CHECKPOINT"}
latest=$(git tag --list "$model#production#*" | sort -t '#' -k 3 -n | tail -n 1)
if [ "$latest" != "$tag" ]; then
  echo "error: $tag is not the latest production assignment of $model ($latest is); nothing deployed" >&2
  exit 1
fi
edgekit registry fetch "$model" --stage production --out "$out/$model" --json > "$out/fetched.json"
edgekit registry checkpoint --json > "$out/checkpoint.json"
${DEPLOY_COMMAND:-ls -l} "$out/$model"
