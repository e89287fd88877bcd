"""The requirements reader (jarvisctl check, venv build): which of
requirements.txt (on stdin) are installed, in the interpreter that runs
this, as the service user. Markers are evaluated
by this interpreter. One JSON object on stdout. Never prints a line of the
file: only names, versions and specifiers (an index URL may hold a token)."""
import json
import sys

import os
import platform
import re

try:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name
except ImportError:
    try:
        from pip._vendor.packaging.requirements import InvalidRequirement, Requirement
        from pip._vendor.packaging.utils import canonicalize_name
    except ImportError:
        Requirement = None  # the system's python3 on Debian: no pip, no packaging

        def canonicalize_name(name):
            return re.sub(r"[-_.]+", "-", name).lower()


# Without packaging: the PEP 508 subset that requirements files use, enough
# to say what is missing. Markers: and/or/parentheses, comparisons of the
# standard variables with quoted strings; specifiers: == != < <= > >= ~= and
# ==X.*, on release numbers (pre-releases sort before their release).
ENV = {
    "os_name": os.name, "sys_platform": sys.platform, "platform_machine": platform.machine(),
    "platform_python_implementation": platform.python_implementation(),
    "platform_release": platform.release(), "platform_system": platform.system(),
    "platform_version": platform.version(),
    "python_version": "%d.%d" % sys.version_info[:2],
    "python_full_version": platform.python_version(),
    "implementation_name": sys.implementation.name,
    "implementation_version": "%d.%d.%d" % sys.implementation.version[:3], "extra": "",
}
VERSIONED = {"python_version", "python_full_version", "implementation_version", "platform_release"}


def vkey(v):
    m = re.match(r"^\s*v?(\d+(?:\.\d+)*)(?:[-_.]?(a|b|c|rc|alpha|beta|pre|preview)[-_.]?(\d*))?", v, re.I)
    if not m:
        return ((0,), 0, 0)
    rel = tuple(int(x) for x in m.group(1).split("."))
    while len(rel) > 1 and rel[-1] == 0:
        rel = rel[:-1]
    pre = {"a": -3, "alpha": -3, "b": -2, "beta": -2}.get((m.group(2) or "").lower(), -1 if m.group(2) else 0)
    return (rel, pre, int(m.group(3) or 0))


def compare(left, op, right, versioned):
    if op in ("in", "not in"):
        return (left in right) == (op == "in")
    if versioned and op not in ("===",):
        return spec_ok(left, op, right)
    return {"==": left == right, "!=": left != right, "===": left == right, "<": left < right,
            "<=": left <= right, ">": left > right, ">=": left >= right}.get(op, False)


def spec_ok(have, op, want):
    if op in ("==", "!=") and want.endswith(".*"):
        prefix = vkey(want[:-2])[0]
        hit = vkey(have)[0][:len(prefix)] == prefix or (vkey(have)[0] + (0,) * len(prefix))[:len(prefix)] == prefix
        return hit if op == "==" else not hit
    h, w = vkey(have), vkey(want)
    if op == "~=":
        parts = vkey(want)[0]
        stem = parts[:-1] if len(parts) > 1 else parts
        return h >= w and (h[0] + (0,) * len(stem))[:len(stem)] == stem
    return {"==": h == w, "===": have == want, "!=": h != w, "<": h < w, "<=": h <= w,
            ">": h > w, ">=": h >= w}.get(op, False)


TOKEN = re.compile(r"\s*(\(|\)|===|==|!=|~=|<=|>=|<|>|not\s+in\b|in\b|and\b|or\b|'[^']*'|\"[^\"]*\"|[A-Za-z_.]+)")


def marker_ok(text):
    toks, pos = [], 0
    while pos < len(text.rstrip()):
        m = TOKEN.match(text, pos)
        if not m:
            raise ValueError(text)
        toks.append(re.sub(r"\s+", " ", m.group(1)))
        pos = m.end()
    toks.append(None)
    at = [0]

    def peek():
        return toks[at[0]]

    def take():
        at[0] += 1
        return toks[at[0] - 1]

    def value():
        t = take()
        if t is None:
            raise ValueError(text)
        if t[0] in "'\"":
            return t[1:-1], False
        if t not in ENV:
            raise ValueError(t)
        return ENV[t], t in VERSIONED

    def atom():
        if peek() == "(":
            take()
            r = disj()
            if take() != ")":
                raise ValueError(text)
            return r
        (left, lv), op, (right, rv) = value(), take(), value()
        return compare(left, op, right, lv or rv)

    def conj():
        r = atom()
        while peek() == "and":
            take()
            r = atom() and r
        return r

    def disj():
        r = conj()
        while peek() == "or":
            take()
            r = conj() or r
        return r

    r = disj()
    if peek() is not None:
        raise ValueError(text)
    return r


class Plain:
    """A requirement read without packaging."""

    def __init__(self, line):
        body, _, marker = line.partition(";")
        m = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$", body)
        if not m:
            raise ValueError(line)
        self.name, rest = m.group(1), m.group(3).strip()
        if rest.startswith("@"):
            rest = ""
        self.clauses = []
        for c in filter(None, (x.strip() for x in rest.strip("()").split(","))):
            cm = re.match(r"^(===|==|!=|~=|<=|>=|<|>)\s*(\S+)$", c)
            if not cm:
                raise ValueError(c)
            self.clauses.append(cm.groups())
        self.specifier = ",".join(op + v for op, v in self.clauses)
        self.marker = marker.strip() or None

    def marker_ok(self):
        return self.marker is None or marker_ok(self.marker)

    def satisfied_by(self, have):
        return all(spec_ok(have, op, v) for op, v in self.clauses)


def installed_versions():
    """{canonical name: version} of what this interpreter has installed."""
    from importlib import metadata

    installed = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            installed.setdefault(canonicalize_name(name), dist.version)
    return installed


def read(text, installed):
    """One result per requirement line of text (its first line number and
    kind: ok, missing, mismatch, skipped, option or invalid), against the
    {canonical name: version} installed."""
    results = []
    joined, first = "", 0
    for n, raw in enumerate(text.splitlines(), 1):
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
            if Requirement is not None:
                req = Requirement(line)
                name, spec = req.name, str(req.specifier)
                applies = req.marker is None or req.marker.evaluate()
                marker = str(req.marker) if req.marker is not None else None
                satisfied = lambda v: not req.specifier or req.specifier.contains(v, prereleases=True)
            else:
                req = Plain(line)
                name, spec, marker = req.name, req.specifier, req.marker
                applies, satisfied = req.marker_ok(), req.satisfied_by
        except (InvalidRequirement if Requirement is not None else ValueError, ValueError):
            results.append({"line": first, "kind": "invalid"})
            continue
        entry = {"line": first, "name": name, "spec": spec}
        if not applies:
            entry.update(kind="skipped", marker=marker)
        else:
            have = installed.get(canonicalize_name(name))
            entry["installed"] = have
            if have is None:
                entry["kind"] = "missing"
            elif not satisfied(have):
                entry["kind"] = "mismatch"
            else:
                entry["kind"] = "ok"
        results.append(entry)
    return results


if __name__ == "__main__":
    results = read(sys.stdin.read(), installed_versions())
    print(json.dumps({"python": "%d.%d.%d" % sys.version_info[:3], "results": results,
                      "reader": "packaging" if Requirement is not None else "pep508-subset"}))
