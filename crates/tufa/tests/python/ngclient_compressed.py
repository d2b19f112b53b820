"""python-tuf's ngclient with its requests fetcher, which asks for gzip as requests does, against
a running Tufa index.

Usage: ngclient_compressed.py INDEX_URL TRUSTED_ROOT CACHE_DIR PROJECT

Refreshes and downloads the project's page target. Prints one JSON object: the verified page's
bytes as text, and for every file fetched, the Accept-Encoding sent and the Content-Encoding
received.
"""

import json
import os
import shutil
import sys

from tuf.ngclient import Updater
from tuf.ngclient.requests_fetcher import RequestsFetcher

base, trusted_root, cache, project = sys.argv[1:5]
metadata_dir = os.path.join(cache, "metadata")
os.makedirs(metadata_dir, exist_ok=True)
if not os.path.exists(os.path.join(metadata_dir, "root.json")):
    shutil.copy(trusted_root, os.path.join(metadata_dir, "root.json"))

fetched = {}


class RecordingFetcher(RequestsFetcher):
    def _get_session(self, url):
        session = super()._get_session(url)

        def record(response, *args, **kwargs):
            fetched[response.url.rsplit("/", 1)[-1]] = {
                "asked": response.request.headers.get("Accept-Encoding"),
                "coding": response.headers.get("Content-Encoding"),
            }

        if record.__name__ not in [h.__name__ for h in session.hooks["response"]]:
            session.hooks["response"].append(record)
        return session


updater = Updater(
    metadata_dir=metadata_dir,
    metadata_base_url=f"{base}/tuf/metadata/",
    target_dir=os.path.join(cache, "targets"),
    target_base_url=f"{base}/tuf/targets/",
    fetcher=RecordingFetcher(),
    bootstrap=None,
)
updater.refresh()
info = updater.get_targetinfo(f"simple/{project}/index.json")
path = updater.download_target(info)
with open(path, "rb") as f:
    page = f.read().decode()
print(json.dumps({"page": page, "fetched": fetched}))
