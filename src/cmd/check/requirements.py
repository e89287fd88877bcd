"""jarvisctl check: which of requirements.txt (on stdin) are installed, in
the interpreter that runs this, as the service user. Markers are evaluated
by this interpreter. One JSON object on stdout. Never prints a line of the
file: only names, versions and specifiers (an index URL may hold a token)."""
import json
import sys

try:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name
except ImportError:
    try:
        from pip._vendor.packaging.requirements import InvalidRequirement, Requirement
        from pip._vendor.packaging.utils import canonicalize_name
    except ImportError:
        print(json.dumps({"error": "neither packaging nor pip is installed in it"}))
        sys.exit(0)
from importlib import metadata

installed = {}
for dist in metadata.distributions():
    name = dist.metadata["Name"]
    if name:
        installed.setdefault(canonicalize_name(name), dist.version)

results = []
joined, first = "", 0
for n, raw in enumerate(sys.stdin.read().splitlines(), 1):
    if not joined:
        first = n
    if raw.endswith("\\"):
        joined += raw[:-1] + " "
        continue
    line, joined = (joined + raw), ""
    # pip: a '#' at the start or after whitespace begins a comment.
    for i, c in enumerate(line):
        if c == "#" and (i == 0 or line[i - 1].isspace()):
            line = line[:i]
            break
    line = line.strip()
    if not line:
        continue
    if line.startswith("-"):
        results.append({"line": first, "kind": "option"})
        continue
    try:
        req = Requirement(line)
    except InvalidRequirement:
        results.append({"line": first, "kind": "invalid"})
        continue
    entry = {"line": first, "name": req.name, "spec": str(req.specifier)}
    if req.marker is not None and not req.marker.evaluate():
        entry.update(kind="skipped", marker=str(req.marker))
    else:
        have = installed.get(canonicalize_name(req.name))
        entry["installed"] = have
        if have is None:
            entry["kind"] = "missing"
        elif req.specifier and not req.specifier.contains(have, prereleases=True):
            entry["kind"] = "mismatch"
        else:
            entry["kind"] = "ok"
    results.append(entry)
print(json.dumps({"python": "%d.%d.%d" % sys.version_info[:3], "results": results}))
