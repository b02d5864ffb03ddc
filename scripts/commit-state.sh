#!/usr/bin/env bash
# Commits what a run changed under the given folders and pushes it, rebasing and retrying
# when the branch moved meanwhile. Used by the workflows (.github/workflows/newsletter.yml,
# inbox.yml), also as `crusader-mail run --checkpoint` before the first request of a send.
# Checkout runs with persist-credentials: false, so the token is handed to this one push only.
# subscribers/subscribers.csv merges reader by reader (.gitattributes names the driver, set up
# here), so an editor's push to the list does not stop the rebase. Exits non-zero when the
# state could not be pushed (after 5 attempts, or a conflict no driver resolves).
# Env: GITHUB_TOKEN, GITHUB_REPOSITORY, BRANCH (GITHUB_SERVER_URL, COMMIT_MESSAGE optional).
set -euo pipefail
paths=()
for path in "$@"; do
  [ -e "$path" ] && paths+=("$path")  # a run that stopped early may not have written one
done
[ $# -gt 0 ] || { echo "usage: commit-state.sh PATH..." >&2; exit 2; }
if [ ${#paths[@]} -eq 0 ]; then
  echo "state unchanged: nothing to commit"
  exit 0
fi

git config merge.crusader-subscribers.name "crusader-mail subscriber list (reader by reader)"
git config merge.crusader-subscribers.driver "crusader-mail merge-driver %O %A %B"

# Lock files, temporary files and the list's index are run-time only: never committed,
# whatever .gitignore says.
git add --all -- "${paths[@]}" ':(exclude,glob)**/*.lock' ':(exclude,glob)**/.*.tmp' \
  ':(exclude,glob)**/.subscribers-index/**'
if git diff --cached --quiet; then
  echo "state unchanged: nothing to commit"
  exit 0
fi
who=(-c user.name="crusader-mail" -c user.email="crusader-mail@users.noreply.github.com")
git "${who[@]}" commit --quiet -m "${COMMIT_MESSAGE:-newsletter: state after run ${GITHUB_RUN_ID:-local}}"

remote="${PUSH_REMOTE:-${GITHUB_SERVER_URL:-https://github.com}/${GITHUB_REPOSITORY}.git}"
auth=()
if [ -n "${GITHUB_TOKEN:-}" ]; then
  basic=$(printf 'x-access-token:%s' "$GITHUB_TOKEN" | base64 | tr -d '\n')
  echo "::add-mask::$basic"
  auth=(-c "http.extraheader=AUTHORIZATION: basic $basic")
fi
for attempt in 1 2 3 4 5; do
  if git "${auth[@]}" push --quiet "$remote" "HEAD:${BRANCH}"; then
    echo "state pushed"
    exit 0
  fi
  echo "push refused (attempt $attempt): the branch moved; rebasing" >&2
  sleep $(((attempt - 1) * 2)) # the first retry at once, then back off
  if ! git "${auth[@]}" fetch --quiet "$remote" "$BRANCH"; then
    continue
  fi
  if ! git "${who[@]}" rebase --quiet FETCH_HEAD; then
    conflicted=$(git diff --name-only --diff-filter=U | tr '\n' ' ')
    git rebase --abort || true
    echo "could not rebase the state onto the branch: conflict in ${conflicted:-?}" \
      "(an edit there during the run); merge it by hand and push" >&2
    exit 1
  fi
done
echo "could not push the state after 5 attempts" >&2
exit 1
