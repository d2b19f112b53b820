"""python-tuf writes and signs a repository for every key type; the Rust test verifies it.

Usage: python_signs.py OUT_DIR

For each key type, OUT_DIR/<keytype>/ receives every role as `<role>.json` (python-tuf's own
file form), the canonical bytes securesystemslib signs as `<role>.canonical`, and `expected.json`
with the answers the Rust side must reproduce: bin names, glob matches and key IDs.
OUT_DIR/keys/ receives encrypted PKCS#8 private keys written by `cryptography`.
"""

import hashlib
import json
import os
import sys
from datetime import datetime, timedelta, timezone

from cryptography.hazmat.primitives import serialization
from securesystemslib.formats import encode_canonical
from securesystemslib.signer import CryptoSigner, SSlibKey
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    SuccinctRoles,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import CanonicalJSONSerializer, JSONSerializer

PASSPHRASE = b"interop passphrase"
EXPIRES = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=365)

# Paths chosen to exercise the glob rules (one component per `*`, `?`, character classes) and
# the hash math on non-ASCII input.
TARGET_PATHS = [
    "simple/requests/index.json",
    "simple/a/index.json",
    "files/x.whl",
    "files/sub/x.whl",
    "a/b/c.txt",
    "a/bb/c.txt",
    "a/b/d/c.txt",
    "ünïcode/pâth.txt",
    "spaces in/name .txt",
    "[brackets].txt",
    "",
]
PATTERNS = ["files/*", "a/*/c.txt", "*", "*.txt", "a/?/c.txt", "[a-f]*/*", "[!a]*", "ünïcode/*"]
BIT_LENGTHS = [1, 3, 6, 8, 14, 32]


def key_id(key_dict):
    """The spec's key ID: SHA-256 of the canonical key object, every field included."""
    return hashlib.sha256(encode_canonical(key_dict).encode()).hexdigest()


def signer_for(keytype):
    if keytype == "ed25519":
        signer = CryptoSigner.generate_ed25519()
    elif keytype in ("ecdsa", "ecdsa-sha2-nistp256"):
        signer = CryptoSigner.generate_ecdsa()
    elif keytype == "rsa":
        signer = CryptoSigner.generate_rsa(size=2048)
    else:
        raise ValueError(keytype)
    public = signer.public_key
    # The second ECDSA spelling, and an unrecognized field on the key and its keyval, both of
    # which the key ID covers.
    keyval = dict(public.keyval, **{"x-keyval-extra": "kept"})
    fields = {"keytype": keytype, "scheme": public.scheme, "keyval": keyval, "x-key-extra": [1, 2]}
    keyid = key_id(fields)
    key = SSlibKey(keyid, keytype, public.scheme, keyval, {"x-key-extra": [1, 2]})
    return CryptoSigner(signer._private_key, key)


def write(out, name, md):
    with open(os.path.join(out, f"{name}.json"), "wb") as f:
        f.write(md.to_bytes(JSONSerializer(compact=False)))
    with open(os.path.join(out, f"{name}.canonical"), "wb") as f:
        f.write(CanonicalJSONSerializer().serialize(md.signed))


def meta_for(out, name, version):
    data = open(os.path.join(out, f"{name}.json"), "rb").read()
    return MetaFile(version, len(data), {"sha256": hashlib.sha256(data).hexdigest()})


def repository(out, keytype):
    os.makedirs(out)
    root_keys = [signer_for(keytype), signer_for(keytype)]
    online, delegate = signer_for(keytype), signer_for(keytype)

    root = Root(expires=EXPIRES, consistent_snapshot=True)
    root.unrecognized_fields["x-root-extra"] = {"nested": [True, None, "\u00e9"]}
    for signer in root_keys:
        root.add_key(signer.public_key, "root")
    root.roles["root"].threshold = 2
    root.roles["root"].unrecognized_fields["x-role-extra"] = 1
    for role in ("timestamp", "snapshot", "targets"):
        root.add_key(online.public_key, role)
    root_md = Metadata(root, unrecognized_fields={"x-envelope": "kept"})
    for signer in root_keys:
        root_md.sign(signer, append=True)
    write(out, "root", root_md)

    targets = Targets(expires=EXPIRES)
    targets.targets["file1.txt"] = TargetFile(
        5, {"sha256": hashlib.sha256(b"hello").hexdigest()}, "file1.txt",
        {"custom": {"upload-time": "2026-11-22T00:00:00Z", "n": 3, "list": ["a", {"b": None}]}},
    )
    delegate_key = delegate.public_key
    targets.delegations = Delegations(
        keys={delegate_key.keyid: delegate_key},
        roles={
            "by-paths": DelegatedRole("by-paths", [delegate_key.keyid], 1, True, paths=["files/*", "a/*/c.txt"],
                                      unrecognized_fields={"x-delegation-extra": "kept"}),
            "by-prefix": DelegatedRole("by-prefix", [delegate_key.keyid], 1, False,
                                       path_hash_prefixes=["00", "8f", "a"]),
            "bins": DelegatedRole("bins", [delegate_key.keyid], 1, False, paths=["*", "*/*", "*/*/*"]),
        },
        unrecognized_fields={"x-delegations-extra": 0},
    )
    targets_md = Metadata(targets)
    targets_md.sign(online)
    write(out, "targets", targets_md)

    by_paths = Targets(expires=EXPIRES)
    by_paths.targets["files/x.whl"] = TargetFile.from_data("files/x.whl", b"wheel bytes")
    md = Metadata(by_paths)
    md.sign(delegate)
    write(out, "by-paths", md)

    by_prefix = Targets(expires=EXPIRES)
    md = Metadata(by_prefix)
    md.sign(delegate)
    write(out, "by-prefix", md)

    bins = Targets(expires=EXPIRES)
    succinct = SuccinctRoles([delegate_key.keyid], 1, 6, "bin", {"x-succinct-extra": "kept"})
    bins.delegations = Delegations(keys={delegate_key.keyid: delegate_key}, succinct_roles=succinct)
    md = Metadata(bins)
    md.sign(delegate)
    write(out, "bins", md)

    page = "simple/requests/index.json"
    bin_name = succinct.get_role_for_target(page)
    bin_role = Targets(expires=EXPIRES)
    bin_role.targets[page] = TargetFile.from_data(page, b'{"meta":{}}')
    md = Metadata(bin_role)
    md.sign(delegate)
    write(out, bin_name, md)

    snapshot = Snapshot(expires=EXPIRES)
    for name in ("targets", "by-paths", "by-prefix", "bins", bin_name):
        snapshot.meta[f"{name}.json"] = meta_for(out, name, 1)
    md = Metadata(snapshot)
    md.sign(online)
    write(out, "snapshot", md)

    timestamp = Timestamp(expires=EXPIRES, snapshot_meta=meta_for(out, "snapshot", 1))
    md = Metadata(timestamp)
    md.sign(online)
    write(out, "timestamp", md)

    roles = targets.delegations.roles
    expected = {
        "bin_role": bin_name,
        "page": page,
        "bins": {
            str(bits): {
                path: SuccinctRoles([], 1, bits, "bin").get_role_for_target(path) for path in TARGET_PATHS
            }
            for bits in BIT_LENGTHS
        },
        "globs": {
            pattern: {
                path: DelegatedRole("g", [], 1, False, paths=[pattern]).is_delegated_path(path)
                for path in TARGET_PATHS
            }
            for pattern in PATTERNS
        },
        "prefix_role_matches": {path: roles["by-prefix"].is_delegated_path(path) for path in TARGET_PATHS},
        "keyids": [signer.public_key.keyid for signer in root_keys + [online, delegate]],
    }
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, ensure_ascii=False)


def private_keys(out):
    """Encrypted PKCS#8 PEM files as `cryptography` writes them, with a signature to compare."""
    os.makedirs(out)
    for keytype, signer in [
        ("ed25519", CryptoSigner.generate_ed25519()),
        ("ecdsa", CryptoSigner.generate_ecdsa()),
        ("rsa", CryptoSigner.generate_rsa(size=2048)),
    ]:
        pem = signer._private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSPHRASE),
        )
        with open(os.path.join(out, f"{keytype}.pem"), "wb") as f:
            f.write(pem)
        with open(os.path.join(out, f"{keytype}.pub.json"), "w") as f:
            json.dump({"keyid": signer.public_key.keyid, "key": signer.public_key.to_dict()}, f)


def main():
    out = sys.argv[1]
    for keytype in ("ed25519", "ecdsa", "ecdsa-sha2-nistp256", "rsa"):
        repository(os.path.join(out, keytype), keytype)
    private_keys(os.path.join(out, "keys"))


main()
