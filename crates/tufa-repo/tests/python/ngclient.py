"""python-tuf's ngclient refreshes a Tufa repository directory and downloads project pages.

Usage: ngclient.py REPO_DIR TRUSTED_ROOT CACHE_DIR PROJECT...

Serves REPO_DIR (holding metadata/ and targets/) over HTTP on a free loopback port, then runs
`tuf.ngclient.Updater` exactly as a PEP 458 client would. Prints one JSON object mapping each
project to the sha256 of its verified page bytes, or null when the repository has no such target.
"""

import hashlib
import http.server
import json
import os
import shutil
import sys
import threading
from functools import partial

from tuf.ngclient import Updater

repo, trusted_root, cache = sys.argv[1:4]
projects = sys.argv[4:]

handler = partial(http.server.SimpleHTTPRequestHandler, directory=repo)
handler.log_message = lambda *args: None
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
base = f"http://127.0.0.1:{server.server_address[1]}"

metadata_dir = os.path.join(cache, "metadata")
os.makedirs(metadata_dir, exist_ok=True)
if not os.path.exists(os.path.join(metadata_dir, "root.json")):
    shutil.copy(trusted_root, os.path.join(metadata_dir, "root.json"))
targets_dir = os.path.join(cache, "targets")
os.makedirs(targets_dir, exist_ok=True)

updater = Updater(
    metadata_dir=metadata_dir,
    metadata_base_url=f"{base}/metadata/",
    target_base_url=f"{base}/targets/",
    target_dir=targets_dir,
    bootstrap=None,
)
updater.refresh()
result = {}
for project in projects:
    info = updater.get_targetinfo(f"simple/{project}/index.json")
    if info is None:
        result[project] = None
        continue
    path = updater.download_target(info)
    result[project] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    os.remove(path)
server.shutdown()
print(json.dumps(result, sort_keys=True))
