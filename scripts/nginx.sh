#!/usr/bin/env bash
# Step: the NGINX proxy (tlsMode nginx), or its removal (tlsMode direct, so Mattermost can bind 80/443 itself).
# With Let's Encrypt, nginx first serves port 80 only (the ACME webroot), certbot obtains the certificate with a
# fixed --cert-name, then the TLS site is enabled. `nginx -t` runs before every reload; a failing config is never
# loaded. When certbot fails, port 80 stays up and a transient timer re-runs this step until it succeeds. Variables: PROXY (on|off); with on: SITE_LEGACY_HTTP2, SITE_HTTP2_DIRECTIVE, SITE_HTTP_ONLY, CERT_FILE,
# KEY_FILE, ACME_WEBROOT, CACHE_DIR, CERTBOT (yes|no); with certbot: DOMAIN, CERT_NAME, ACME_SERVER,
# LETSENCRYPT_EMAIL, optional ACME_CA_BUNDLE (PEM of a private ACME server's TLS CA).
source "$(dirname "$0")/lib.sh"
load_vars
require_vars PROXY

site=/etc/nginx/sites-available/mattermost
link=/etc/nginx/sites-enabled/mattermost
retry_unit=mattermost-certificate-retry
retry_vars=/etc/mattermost-deploy/nginx-step.vars

# stop_retry: the certificate exists (or the proxy is off): no more issuance retries.
stop_retry() {
  if systemctl is-active --quiet "$retry_unit.timer" 2>/dev/null; then
    systemctl stop "$retry_unit.timer"
    changed "stopped the certificate retry timer"
  fi
  rm -f "$retry_vars"
}

# schedule_retry: certbot failed (DNS not pointing here yet, port 80 blocked, a rate limit): keep serving port 80
# and run this step again every 2 minutes until it succeeds; `pulumi up`'s endpoint check reports why meanwhile.
schedule_retry() {
  save_vars "$retry_vars"
  if ! systemctl is-active --quiet "$retry_unit.timer"; then
    systemctl reset-failed "$retry_unit.timer" "$retry_unit.service" 2>/dev/null || :
    # shellcheck disable=SC2016 # $0 and $1 are expanded by the inner bash, from the arguments after the script
    systemd-run --quiet --unit="$retry_unit" --on-active=2min --on-unit-inactive=2min \
      /bin/bash -c 'exec bash "$0" <"$1"' "$(realpath "$0")" "$retry_vars"
    changed "certificate retry timer started (every 2 minutes: journalctl -u $retry_unit)"
  fi
}

if [[ "$PROXY" == off ]]; then
  if systemctl is-enabled --quiet nginx 2>/dev/null || systemctl is-active --quiet nginx 2>/dev/null; then
    systemctl disable --now --quiet nginx
    changed "nginx stopped and disabled (tlsMode direct: Mattermost serves 80/443)"
  fi
  if [[ -e "$link" ]]; then
    rm -f "$link"
    changed "removed $link"
  fi
  if systemctl is-enabled --quiet certbot.timer 2>/dev/null; then
    systemctl disable --now --quiet certbot.timer
    changed "certbot renewal timer disabled"
  fi
  stop_retry
  exit 0
fi

require_vars SITE_LEGACY_HTTP2 SITE_HTTP2_DIRECTIVE SITE_HTTP_ONLY CERT_FILE KEY_FILE ACME_WEBROOT CACHE_DIR CERTBOT
apt_install nginx
[[ "$CERTBOT" == yes ]] && apt_install certbot

# The default site would answer port 80 for other names and shadow nothing useful.
if [[ -e /etc/nginx/sites-enabled/default ]]; then
  rm -f /etc/nginx/sites-enabled/default
  changed "removed the default nginx site"
fi
install -d -m 0755 "$ACME_WEBROOT"
install -d -m 0700 -o www-data -g www-data "$CACHE_DIR"

reload_needed=0
# apply_site VAR: install the site from VAR, test it, and roll back to the previous file if nginx rejects it.
apply_site() {
  local var=$1 backup out
  backup=$(mktemp)
  [[ -f "$site" ]] && cp -a "$site" "$backup"
  if install_content "$var" "$site" 0644 root:root; then
    ln -sfn "$site" "$link"
    if ! out=$(nginx -t 2>&1); then
      if [[ -s "$backup" ]]; then cp -a "$backup" "$site"; else rm -f "$site" "$link"; fi
      rm -f "$backup"
      die "nginx rejected the new site (the running config is unchanged): $out"
    fi
    reload_needed=1
  fi
  rm -f "$backup"
  ln -sfn "$site" "$link"
}

# reload_nginx: start nginx, or reload it when a site changed; either only after `nginx -t` passes.
reload_nginx() {
  local action="" out
  systemctl enable --quiet nginx
  if ! systemctl is-active --quiet nginx; then
    action=start
  elif ((reload_needed)); then
    action=reload
  fi
  reload_needed=0
  [[ -n "$action" ]] || return 0
  out=$(nginx -t 2>&1) || die "nginx -t failed: $out"
  systemctl "$action" nginx
  changed "${action}ed nginx"
}

# Debian's nginx.conf allows 768 connections per worker; every open Mattermost client holds a websocket (two
# connections through the proxy), so a few hundred users exhaust it and nginx silently drops new ones. The
# descriptor limit goes in a main-context include (16384: raising the soft limit up to systemd's default hard
# limit needs no privilege); worker_connections lives in nginx.conf's events block.
export NGINX_LIMITS=$'# Installed by mattermost-deploy: descriptors for many websockets.\nworker_rlimit_nofile 16384;\n'
install_content NGINX_LIMITS /etc/nginx/modules-enabled/90-mattermost-limits.conf 0644 root:root && reload_needed=1
if grep -Eq '^[[:space:]]*worker_connections[[:space:]]+768;' /etc/nginx/nginx.conf; then
  sed -i -E 's/^([[:space:]]*)worker_connections[[:space:]]+768;/\1worker_connections 8192;/' /etc/nginx/nginx.conf
  changed "nginx worker_connections 768 -> 8192"
  reload_needed=1
fi

nginx_version=$(nginx -v 2>&1 | sed -n 's|.*nginx/\([0-9.]*\).*|\1|p')
if dpkg --compare-versions "$nginx_version" ge 1.25.1; then full=SITE_HTTP2_DIRECTIVE; else full=SITE_LEGACY_HTTP2; fi

if [[ "$CERTBOT" == yes ]]; then
  require_vars DOMAIN CERT_NAME ACME_SERVER LETSENCRYPT_EMAIL
  if [[ -n "${ACME_CA_BUNDLE:-}" ]]; then
    if install_content ACME_CA_BUNDLE /etc/mattermost-deploy/acme-ca.pem 0644 root:root; then :; fi
    export REQUESTS_CA_BUNDLE=/etc/mattermost-deploy/acme-ca.pem
    export CERTBOT_DROPIN=$'[Service]\nEnvironment=REQUESTS_CA_BUNDLE=/etc/mattermost-deploy/acme-ca.pem\n'
    if install_content CERTBOT_DROPIN /etc/systemd/system/certbot.service.d/acme-ca.conf 0644 root:root; then systemctl daemon-reload; fi
  fi
  # Renewals must reload nginx, or it keeps serving the old certificate.
  export HOOK=$'#!/bin/sh\n# Installed by mattermost-deploy: serve renewed certificates.\nnginx -t -q && systemctl reload nginx\n'
  install_content HOOK /etc/letsencrypt/renewal-hooks/deploy/reload-nginx 0755 root:root || true

  if [[ ! -s "$CERT_FILE" ]]; then
    # No certificate yet: serve port 80 only, so the HTTP-01 challenge can be answered.
    apply_site SITE_HTTP_ONLY
    reload_nginx
  fi
  renewal="/etc/letsencrypt/renewal/$CERT_NAME.conf"
  current_server=$(sed -n 's/^server = //p' "$renewal" 2>/dev/null || true)
  force=()
  if [[ -s "$CERT_FILE" && -n "$current_server" && "$current_server" != "$ACME_SERVER" ]]; then
    force=(--force-renewal)
    log "ACME server changed ($current_server -> $ACME_SERVER): requesting a new certificate"
  fi
  covers_domain() { openssl x509 -in "$CERT_FILE" -noout -ext subjectAltName 2>/dev/null | grep -qF "DNS:$DOMAIN"; }
  if [[ ! -s "$CERT_FILE" || ${#force[@]} -gt 0 ]] || ! covers_domain; then
    if certbot certonly --non-interactive --agree-tos --no-eff-email --webroot -w "$ACME_WEBROOT" \
      --cert-name "$CERT_NAME" -d "$DOMAIN" -m "$LETSENCRYPT_EMAIL" --server "$ACME_SERVER" \
      --keep-until-expiring "${force[@]}"; then
      changed "certificate for $DOMAIN from $ACME_SERVER"
    else
      log "warning: certbot could not get a certificate for $DOMAIN from $ACME_SERVER (/var/log/letsencrypt/letsencrypt.log); retrying every 2 minutes"
      schedule_retry
      # Without any certificate only port 80 is served; an existing one stays in use until the new one arrives.
      [[ -s "$CERT_FILE" ]] || exit 0
    fi
  fi
  [[ -s "$CERT_FILE" ]] && stop_retry
  if ! systemctl is-enabled --quiet certbot.timer 2>/dev/null; then
    systemctl enable --now --quiet certbot.timer
    changed "certbot renewal timer enabled"
  fi
fi

[[ -s "$CERT_FILE" && -s "$KEY_FILE" ]] || die "certificate $CERT_FILE or key $KEY_FILE missing"
apply_site "$full"
reload_nginx
