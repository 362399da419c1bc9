#!/usr/bin/env bash
# Renders the server files of every stack at two checkouts and diffs them: a pull request's server-side change.
# usage: tools/render-diff.sh <base checkout> <head checkout> <out dir>
# Writes <out>/base/<stack>/ and <out>/head/<stack>/ (npm run render at each checkout, with its own code),
# <out>/render.diff (`diff -ru`, file times left out; empty when nothing changed) and <out>/comment.md (the pull
# request comment, formatted by the head checkout's tools/diffComment.ts). BASE_LABEL and HEAD_LABEL name the two
# sides in the comment (default: the checkout paths). A checkout without node_modules gets `npm ci` first.
# A base without the render command, or whose stack fails to render, shows as an empty side or as the error
# message; the head must render, or the script fails.
set -euo pipefail

if (($# != 3)); then
  echo "usage: $0 <base checkout> <head checkout> <out dir>" >&2
  exit 2
fi
base=$(cd "$1" && pwd)
head=$(cd "$2" && pwd)
mkdir -p "$3"
out=$(cd "$3" && pwd)
rm -rf "$out/base" "$out/head" "$out/render.diff" "$out/comment.md"
mkdir -p "$out/base" "$out/head"

# Every stack with a stack file on either side.
mapfile -t stacks < <(
  for f in "$base"/Pulumi.*.yaml "$head"/Pulumi.*.yaml; do
    if [[ -f "$f" ]]; then
      name=${f##*/Pulumi.}
      echo "${name%.yaml}"
    fi
  done | sort -u
)

# render_side CHECKOUT SIDE: renders each stack of CHECKOUT into $out/SIDE/<stack>.
render_side() {
  local dir=$1 side=$2 stack err
  if [[ ! -f "$dir/tools/render.ts" ]]; then
    echo "$side ($dir) has no render command (tools/render.ts): its side of the diff is empty" >&2
    return 0
  fi
  if [[ ! -d "$dir/node_modules" ]]; then
    (cd "$dir" && npm ci --no-audit --no-fund)
  fi
  for stack in "${stacks[@]}"; do
    [[ -f "$dir/Pulumi.$stack.yaml" ]] || continue
    err="$out/$side-$stack.stderr"
    if (cd "$dir" && npm run --silent render -- --stack "$stack" --out "$out/$side/$stack") >/dev/null 2>"$err"; then
      cat "$err" >&2
      continue
    fi
    echo "$side: stack $stack does not render:" >&2
    cat "$err" >&2
    if [[ "$side" == head ]]; then
      exit 1
    fi
    mkdir -p "$out/$side/$stack"
    cp "$err" "$out/$side/$stack/RENDER-FAILED.txt"
  done
}

render_side "$base" base
render_side "$head" head

# diff exits 1 when the trees differ; only 2 and above are failures.
status=0
(cd "$out" && diff -ru base head >render.diff.raw) || status=$?
if ((status > 1)); then
  echo "diff failed with status $status" >&2
  exit "$status"
fi
# Drop the file times from the ---/+++ headers: they only say when the render ran.
sed -E 's/^((---|\+\+\+) [^\t]+)\t.*$/\1/' "$out/render.diff.raw" >"$out/render.diff"
rm -f "$out/render.diff.raw"

(cd "$head" && node -r ts-node/register tools/diffComment.ts --diff "$out/render.diff" \
  --base "${BASE_LABEL:-$base}" --head "${HEAD_LABEL:-$head}") >"$out/comment.md"
changed=$(awk '/^(diff -ru |Only in )/ { n++ } END { print n + 0 }' "$out/render.diff")
echo "render diff: $changed changed path(s); $out/render.diff, $out/comment.md" >&2
