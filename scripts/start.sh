#!/usr/bin/env bash
# Step: the capability, then (re)start and health check. setcap comes last, after every chown and every
# upgrade, because replacing the binary or chown-ing it clears file capabilities.
# Variables: HEALTH_URL, HEALTH_STATUS (expected HTTP status), HEALTH_TIMEOUT (seconds).
source "$(dirname "$0")/lib.sh"
load_vars
require_vars HEALTH_URL HEALTH_STATUS HEALTH_TIMEOUT

binary=/opt/mattermost/bin/mattermost
[[ -x "$binary" ]] || die "$binary is missing; the mattermost step must run first"
if ! getcap "$binary" | grep -q 'cap_net_bind_service=ep'; then
  setcap cap_net_bind_service=+ep "$binary"
  changed "setcap cap_net_bind_service=+ep $binary"
  mark_restart_needed
fi

marker="$STATE_DIR/restart-mattermost"
if [[ -e "$marker" ]]; then
  systemctl restart mattermost
  rm -f "$marker"
  changed "restarted mattermost"
elif ! systemctl is-active --quiet mattermost; then
  systemctl start mattermost
  changed "started mattermost"
fi

deadline=$((SECONDS + HEALTH_TIMEOUT))
status=""
while ((SECONDS < deadline)); do
  status=$(curl -ksS -o /dev/null -w '%{http_code}' --max-time 5 "$HEALTH_URL" 2>/dev/null || true)
  [[ "$status" == "$HEALTH_STATUS" ]] && break
  sleep 2
done
if [[ "$status" != "$HEALTH_STATUS" ]]; then
  printf 'error: Mattermost did not answer %s with %s within %s s (last: %s). Journal:\n' \
    "$HEALTH_URL" "$HEALTH_STATUS" "$HEALTH_TIMEOUT" "${status:-no answer}" >&2
  journalctl -u mattermost -n 40 --no-pager >&2 || true
  exit 1
fi
log "mattermost healthy: $HEALTH_URL answered $status"
