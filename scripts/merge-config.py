#!/usr/bin/env python3
"""Deep-merges a JSON patch (standard input) into Mattermost's config.json, in place, only when it changes.

Usage: merge-config.py CONFIG_PATH. Exit 0 and prints "changed" when the file was rewritten, "unchanged" otherwise.
Objects merge key by key; any other value (including lists) replaces the old one.
"""
import json
import os
import sys
import tempfile


def merge(base, patch):
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return patch
    out = dict(base)
    for key, value in patch.items():
        out[key] = merge(base.get(key), value) if key in base else value
    return out


def main():
    path = sys.argv[1]
    patch = json.load(sys.stdin)
    with open(path, encoding="utf-8") as f:
        current = json.load(f)
    merged = merge(current, patch)
    if merged == current:
        print("unchanged")
        return
    st = os.stat(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".config.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(merged, f, indent=2, sort_keys=False)
        f.write("\n")
    os.chown(tmp, st.st_uid, st.st_gid)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    print("changed")


if __name__ == "__main__":
    main()
