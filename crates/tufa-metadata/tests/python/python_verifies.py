"""python-tuf verifies a repository written and signed by Tufa, for every key type.

Usage: python_verifies.py IN_DIR

IN_DIR/<keytype>/ holds `<role>.json` files as Tufa writes them, `<role>.canonical` with the bytes
Tufa signed, and `expected.json`. IN_DIR/keys/ holds Tufa's encrypted private key files with the
public key and a signature made with each. Prints a JSON summary of what was checked; any failed
check raises, so the script exits non-zero with python-tuf's own error.
"""

import json
import os
import sys

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.exceptions import UnverifiedSignatureError
from securesystemslib.signer import Signature, SSlibKey
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root, Snapshot, SuccinctRoles, Targets, Timestamp
from tuf.api.serialization.json import CanonicalJSONSerializer

PASSPHRASE = b"interop passphrase"


def check_repository(d):
    def load(name, cls):
        data = open(os.path.join(d, f"{name}.json"), "rb").read()
        md = Metadata[cls].from_bytes(data)
        canonical = open(os.path.join(d, f"{name}.canonical"), "rb").read()
        assert CanonicalJSONSerializer().serialize(md.signed) == canonical, f"{name}: canonical bytes differ"
        return md, data

    expected = json.load(open(os.path.join(d, "expected.json")))
    root, _ = load("root", Root)
    root.verify_delegate("root", root)
    timestamp, _ = load("timestamp", Timestamp)
    root.verify_delegate("timestamp", timestamp)
    snapshot, snapshot_bytes = load("snapshot", Snapshot)
    root.verify_delegate("snapshot", snapshot)
    timestamp.signed.snapshot_meta.verify_length_and_hashes(snapshot_bytes)
    targets, targets_bytes = load("targets", Targets)
    root.verify_delegate("targets", targets)
    snapshot.signed.meta["targets.json"].verify_length_and_hashes(targets_bytes)
    assert targets.signed.targets["file1.txt"].custom == expected["custom"]

    for name in ("by-paths", "by-prefix", "bins"):
        md, data = load(name, Targets)
        targets.verify_delegate(name, md)
        snapshot.signed.meta[f"{name}.json"].verify_length_and_hashes(data)
    bins, _ = load("bins", Targets)
    succinct = bins.signed.delegations.succinct_roles
    assert succinct.get_role_for_target(expected["page"]) == expected["bin_role"]
    bin_role, _ = load(expected["bin_role"], Targets)
    bins.verify_delegate(expected["bin_role"], bin_role)

    for bits, names in expected["bins"].items():
        roles = SuccinctRoles([], 1, int(bits), "bin")
        for path, name in names.items():
            assert roles.get_role_for_target(path) == name, (bits, path, name)

    # The checks above must be able to fail: python-tuf refuses the same root once changed.
    root.signed.version += 1
    try:
        root.verify_delegate("root", root)
    except UnsignedMetadataError:
        pass
    else:
        raise AssertionError("python-tuf accepted a modified root")
    return sorted({key.keytype for key in root.signed.keys.values()})


def check_key(path):
    with open(path + ".pub.json") as f:
        published = json.load(f)
    private = load_pem_private_key(open(path + ".pem", "rb").read(), PASSPHRASE)
    key = SSlibKey.from_crypto(private.public_key())
    assert key.to_dict() == published["key"], (key.to_dict(), published["key"])
    assert key.keyid == published["keyid"]
    key.verify_signature(Signature(key.keyid, published["sig"]), published["message"].encode())
    try:
        key.verify_signature(Signature(key.keyid, published["sig"]), b"other message")
    except UnverifiedSignatureError:
        pass
    else:
        raise AssertionError("a signature verified over another message")
    return key.keytype


def main():
    base = sys.argv[1]
    repositories = {
        name: check_repository(os.path.join(base, name))
        for name in sorted(os.listdir(base))
        if name != "keys"
    }
    keys_dir = os.path.join(base, "keys")
    keys = sorted(
        check_key(os.path.join(keys_dir, name[: -len(".pem")]))
        for name in os.listdir(keys_dir)
        if name.endswith(".pem")
    )
    print(json.dumps({"repositories": repositories, "keys": keys}, sort_keys=True))


main()
