"""python-tuf's ngclient against a running Tufa index, as a PEP 458 client would use it.

Usage: ngclient_http.py INDEX_URL TRUSTED_ROOT CACHE_DIR PROJECT...

Trusts TRUSTED_ROOT on first use of CACHE_DIR, refreshes, then downloads each project's page
target `simple/<project>/index.json` (a PROJECT written `<view>/<project>`, such as
`cooldown/demo`, names that view's target `<view>/<project>/index.json`). Prints one JSON object:
the trusted timestamp version and, per PROJECT argument, the verified page (parsed) or null when
the repository has no such target.
"""

import json
import os
import shutil
import sys

from tuf.ngclient import Updater

base, trusted_root, cache = sys.argv[1:4]
projects = sys.argv[4:]
metadata_dir = os.path.join(cache, "metadata")
os.makedirs(metadata_dir, exist_ok=True)
if not os.path.exists(os.path.join(metadata_dir, "root.json")):
    shutil.copy(trusted_root, os.path.join(metadata_dir, "root.json"))

updater = Updater(
    metadata_dir=metadata_dir,
    metadata_base_url=f"{base}/tuf/metadata/",
    target_dir=os.path.join(cache, "targets"),
    target_base_url=f"{base}/tuf/targets/",
    bootstrap=None,
)
updater.refresh()
with open(os.path.join(metadata_dir, "timestamp.json"), "rb") as f:
    result = {"timestamp_version": json.load(f)["signed"]["version"], "pages": {}}
for project in projects:
    target = project if "/" in project else f"simple/{project}"
    info = updater.get_targetinfo(f"{target}/index.json")
    if info is None:
        result["pages"][project] = None
        continue
    path = updater.download_target(info)
    with open(path, "rb") as f:
        result["pages"][project] = json.load(f)
print(json.dumps(result))
