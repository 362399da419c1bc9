#!/usr/bin/env bash
# Step: the daily database dump onto the data volume (a systemd timer 30 minutes before the EBS snapshot).
# Variables: DUMP_PROGRAM (installed as /usr/local/sbin/mattermost-db-dump), DUMP_SERVICE, DUMP_TIMER (unit files).
source "$(dirname "$0")/lib.sh"
load_vars
require_vars DUMP_PROGRAM DUMP_SERVICE DUMP_TIMER

reload=0
install_content DUMP_PROGRAM /usr/local/sbin/mattermost-db-dump 0755 root:root && reload=1
install_content DUMP_SERVICE /etc/systemd/system/mattermost-db-dump.service 0644 root:root && reload=1
install_content DUMP_TIMER /etc/systemd/system/mattermost-db-dump.timer 0644 root:root && reload=1
if ((reload)); then
  systemctl daemon-reload
  # A changed schedule takes effect only when the timer is restarted.
  if systemctl is-active --quiet mattermost-db-dump.timer; then systemctl restart mattermost-db-dump.timer; fi
fi
if ! systemctl is-enabled --quiet mattermost-db-dump.timer || ! systemctl is-active --quiet mattermost-db-dump.timer; then
  systemctl enable --now --quiet mattermost-db-dump.timer
  changed "database dump timer enabled ($(systemctl show -p TimersCalendar --value mattermost-db-dump.timer))"
fi
