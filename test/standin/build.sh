#!/usr/bin/env bash
# Builds the Mattermost stand-in and packs it as a release tarball:
#   build.sh VERSION ARCH OUTDIR
# writes OUTDIR/mattermost-VERSION-linux-<amd64|arm64>.tar.gz and its .sha256.
# Needs Debian's golang-go and golang-github-lib-pq-dev; works offline.
set -euo pipefail

if [[ $# -ne 3 ]]; then
  echo "usage: $0 VERSION ARCH OUTDIR   (ARCH: x86_64|amd64|arm64|aarch64)" >&2
  exit 2
fi
version=$1
arch=$2
outdir=$3

if [[ ! $version =~ ^[0-9A-Za-z][0-9A-Za-z.+_-]*$ ]]; then
  echo "build.sh: bad version '$version'" >&2
  exit 2
fi
case "$arch" in
  x86_64 | amd64) goarch=amd64 ;;
  arm64 | aarch64) goarch=arm64 ;;
  *)
    echo "build.sh: unsupported ARCH '$arch' (x86_64, amd64, arm64, aarch64)" >&2
    exit 2
    ;;
esac

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
gocode=${STANDIN_GOPATH:-/usr/share/gocode}
if ! command -v go >/dev/null 2>&1; then
  echo "build.sh: go not found; apt-get install -y golang-go golang-github-lib-pq-dev" >&2
  exit 1
fi
if [[ ! -d $gocode/src/github.com/lib/pq ]]; then
  echo "build.sh: lib/pq not found in $gocode; apt-get install -y golang-github-lib-pq-dev" >&2
  exit 1
fi

mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
name="mattermost-${version}-linux-${goarch}"
tarball="$outdir/$name.tar.gz"

# The compiled binary is cached per version, arch, source and toolchain.
srchash=$( (cat "$here/main.go"; go version; sha256sum "$gocode"/src/github.com/lib/pq/*.go) | sha256sum | cut -c1-16)
cachedir="$outdir/.standin-cache/${version}-${goarch}-${srchash}"
bin="$cachedir/mattermost"
if [[ ! -x $bin ]]; then
  mkdir -p "$cachedir"
  echo "build.sh: compiling stand-in $version for linux/$goarch" >&2
  (
    cd "$here"
    env -u GOFLAGS GO111MODULE=off GOPATH="$gocode" CGO_ENABLED=0 GOOS=linux GOARCH="$goarch" \
      go build -trimpath -buildvcs=false \
      -ldflags "-s -w -buildid= -X main.version=${version}" \
      -o "$bin.tmp" main.go
  )
  mv "$bin.tmp" "$bin"
else
  echo "build.sh: using cached binary $bin" >&2
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
top="$stage/mattermost"
mkdir -p "$top/bin" "$top/config" "$top/client" "$top/logs" "$top/i18n" "$top/templates"
install -m 0755 "$bin" "$top/bin/mattermost"

cat >"$top/config/config.json" <<'JSON'
{
    "ServiceSettings": {
        "SiteURL": "",
        "WebsocketURL": "",
        "LicenseFileLocation": "",
        "ListenAddress": ":8065",
        "ConnectionSecurity": "",
        "TLSCertFile": "",
        "TLSKeyFile": "",
        "TLSMinVer": "1.2",
        "TLSStrictTransport": false,
        "TLSStrictTransportMaxAge": 63072000,
        "TLSOverwriteCiphers": [],
        "UseLetsEncrypt": false,
        "LetsEncryptCertificateCacheFile": "./config/letsencrypt.cache",
        "Forward80To443": false,
        "TrustedProxyIPHeader": [],
        "ReadTimeout": 300,
        "WriteTimeout": 300,
        "IdleTimeout": 60,
        "MaximumLoginAttempts": 10,
        "AllowCorsFrom": "",
        "EnableLocalMode": false,
        "LocalModeSocketLocation": "/var/tmp/mattermost_local.socket"
    },
    "TeamSettings": {
        "SiteName": "Mattermost",
        "MaxUsersPerTeam": 50
    },
    "SqlSettings": {
        "DriverName": "postgres",
        "DataSource": "postgres://mmuser:mostest@localhost/mattermost_test?sslmode=disable\u0026connect_timeout=10\u0026binary_parameters=yes",
        "DataSourceReplicas": [],
        "DataSourceSearchReplicas": [],
        "MaxIdleConns": 20,
        "ConnMaxLifetimeMilliseconds": 3600000,
        "ConnMaxIdleTimeMilliseconds": 300000,
        "MaxOpenConns": 300,
        "Trace": false,
        "AtRestEncryptKey": "",
        "QueryTimeout": 30
    },
    "LogSettings": {
        "EnableConsole": true,
        "ConsoleLevel": "INFO",
        "ConsoleJson": true,
        "EnableFile": true,
        "FileLevel": "INFO",
        "FileJson": true,
        "FileLocation": ""
    },
    "FileSettings": {
        "EnableFileAttachments": true,
        "MaxFileSize": 104857600,
        "DriverName": "local",
        "Directory": "./data/",
        "AmazonS3Bucket": "",
        "AmazonS3Region": "",
        "AmazonS3Endpoint": "s3.amazonaws.com",
        "AmazonS3SSL": true
    },
    "EmailSettings": {
        "EnableSignUpWithEmail": true,
        "SendEmailNotifications": true,
        "EnableEmailBatching": false
    },
    "PluginSettings": {
        "Enable": true,
        "Directory": "./plugins",
        "ClientDirectory": "./client/plugins"
    }
}
JSON

cat >"$top/client/index.html" <<'HTML'
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Mattermost stand-in</title>
</head>
<body>
<h1>Mattermost stand-in</h1>
<p id="status">websocket: connecting</p>
<script>
(function () {
  var status = document.getElementById("status");
  var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
  var ws = new WebSocket(scheme + window.location.host + "/api/v4/websocket");
  ws.onopen = function () { ws.send("ping-from-page"); };
  ws.onmessage = function (ev) {
    if (ev.data === "echo:ping-from-page") {
      status.textContent = "websocket: connected";
      ws.close(1000, "done");
    }
  };
  ws.onerror = function () { status.textContent = "websocket: error"; };
})();
</script>
</body>
</html>
HTML

: >"$top/i18n/en.json"
printf 'Mattermost stand-in %s for tests; not the real Mattermost server.\n' "$version" >"$top/README.md"

find "$top" -type d -exec chmod 0755 {} +
find "$top" -type f ! -path "$top/bin/mattermost" -exec chmod 0644 {} +

tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
  --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
  -C "$stage" -cf - mattermost | gzip -n -9 >"$tarball.tmp"
mv "$tarball.tmp" "$tarball"
(cd "$outdir" && sha256sum "$name.tar.gz" >"$name.tar.gz.sha256")
echo "$tarball"
