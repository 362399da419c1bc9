#!/usr/bin/env bash
# One-time copy of Mattermost's files from the data volume into the S3 bucket of `fileStorage: s3`. Run by hand on
# the server (not a step: it needs the AWS CLI and a real bucket, which no test here can provide) right AFTER the
# `pulumi up` that created the bucket and switched FileSettings to amazons3 (from then on new uploads go to S3 and
# nothing writes to the volume; files uploaded before stay unavailable until this copy has run):
#   sudo snap install aws-cli --classic      # Ubuntu 24.04 has no awscli package in apt
#   sudo bash mattermost-deploy/scripts/migrate-files-s3.sh <bucket> [<data directory>]
# It uses the instance role (no keys), copies with server-side encryption, and then compares object and file counts.
# Files stay on the volume until you remove them.
set -euo pipefail
bucket=${1:?usage: migrate-files-s3.sh <bucket> [<data directory>]}
dir=${2:-/mnt/mattermost-data/mattermost/data}
[[ "$bucket" =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] || { echo "not a bucket name: $bucket" >&2; exit 1; }
[[ -d "$dir" ]] || { echo "no such directory: $dir" >&2; exit 1; }
command -v aws >/dev/null || { echo "the AWS CLI is missing: sudo snap install aws-cli --classic" >&2; exit 1; }

aws s3 sync "$dir/" "s3://$bucket/" --sse AES256 --only-show-errors
local_files=$(find "$dir" -type f | wc -l)
remote_objects=$(aws s3 ls "s3://$bucket/" --recursive | wc -l)
echo "files on the volume: $local_files; objects in s3://$bucket: $remote_objects"
if ((remote_objects < local_files)); then
  echo "fewer objects than files: run the script again" >&2
  exit 1
fi
echo "copied; the files stay on $dir until you remove them"
