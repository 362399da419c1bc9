#!/usr/bin/env bash
# Step: the TLS certificate chain and private key, as files readable only by their owner.
# Variables: CERT_FILE, KEY_FILE, CERT_OWNER (user that reads them); CERT_CHAIN; secret: CERT_KEY.
source "$(dirname "$0")/lib.sh"
load_vars
require_vars CERT_FILE KEY_FILE CERT_OWNER CERT_CHAIN CERT_KEY
ensure_system_user "$CERT_OWNER" /opt/mattermost

dir=$(dirname "$KEY_FILE")
install -d -m 0750 -o root -g "$CERT_OWNER" "$dir"
cert_changed=0
install_content CERT_CHAIN "$CERT_FILE" 0644 "$CERT_OWNER:$CERT_OWNER" && cert_changed=1
install_content CERT_KEY "$KEY_FILE" 0600 "$CERT_OWNER:$CERT_OWNER" && cert_changed=1
if ((cert_changed)); then
  mark_restart_needed
fi
