#!/usr/bin/env bash
# Commits what a run changed under the given folders and pushes it, rebasing and retrying
# when the branch moved meanwhile. Used by .github/workflows/newsletter.yml (checkout runs with
# persist-credentials: false, so the token is handed to this one push only).
# Env: GITHUB_TOKEN, GITHUB_REPOSITORY, BRANCH (GITHUB_SERVER_URL optional).
set -euo pipefail
paths=("$@")
[ ${#paths[@]} -gt 0 ] || { echo "usage: commit-state.sh PATH..." >&2; exit 2; }

# Lock files and temporary files are run-time only: never committed, whatever .gitignore says.
git add --all -- "${paths[@]}" ':(exclude,glob)**/*.lock' ':(exclude,glob)**/.*.tmp'
if git diff --cached --quiet; then
  echo "state unchanged: nothing to commit"
  exit 0
fi
git -c user.name="crusader-mail" -c user.email="crusader-mail@users.noreply.github.com" \
  commit --quiet -m "newsletter: state after run ${GITHUB_RUN_ID:-local}"

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
  git "${auth[@]}" fetch --quiet "$remote" "$BRANCH"
  git -c user.name="crusader-mail" -c user.email="crusader-mail@users.noreply.github.com" \
    rebase --quiet FETCH_HEAD
  sleep $((attempt * 2))
done
echo "could not push the state after 5 attempts" >&2
exit 1
