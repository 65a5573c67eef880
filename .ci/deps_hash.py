"""Print a short hash of the dependency lists in pyproject.toml (keys the cached venv)."""

import hashlib
import json
import pathlib
import sys

text = pathlib.Path(__file__).resolve().parent.parent.joinpath("pyproject.toml").read_bytes()
try:
    import tomllib

    project = tomllib.loads(text.decode())["project"]
    blob = json.dumps(
        [project["dependencies"], project.get("optional-dependencies", {}), sys.version_info[:2]],
        sort_keys=True,
    ).encode()
except ModuleNotFoundError:  # Python 3.10: hash the whole file
    blob = text
print(hashlib.sha256(blob).hexdigest()[:12])
