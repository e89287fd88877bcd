"""jarvisctl venv build, the part that runs as the service user (never root:
installing packages runs their build code). Sent by jarvisctl and run with
the base interpreter: python3 -I -c SOURCE build CODE_ROOT REQUIREMENTS
WHEELHOUSE INSTALLER BASE_PYTHON [READER [switch|no-switch]], SOURCE
rollback CODE_ROOT, SOURCE switch CODE_ROOT TARGET|none, or SOURCE adopt
CODE_ROOT. REQUIREMENTS "-" is stdin (root read the file and sends it: the
service user may not be able to open it); the environment keeps a copy of
what it was built from in venvs/<id>/requirements.txt.
READER is the requirements reader that check runs (python/requirements.py): the
new interpreter runs it on the requirements once they are installed, so a
build is switched to only when check would pass it, and the lines whose
markers exclude the host are named whichever installer ran. Builds
venvs/<id> beside the live environment, then
switches the `venv` link to it with one rename; the previous one is kept.
Prints one JSON object on its last line; exit 0 built, 1 failed (the live
environment untouched), 2 bad input."""
import json
import os
import re
import shutil
import subprocess
import sys
import time

KEEP = 3  # built environments kept: the live one, the previous, one more


def done(code, **report):
    report["ok"] = code == 0
    print(json.dumps(report), flush=True)
    sys.exit(code)


def last_error(text):
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("ERROR:") or l.startswith("error:")]
    return (errors or lines or ["(no output)"])[-1]


def failed_name(text):
    for pat in (r"No matching distribution found for ([A-Za-z0-9._-]+)",
                r"Could not find a version that satisfies the requirement ([A-Za-z0-9._-]+)",
                r"Failed to build ([A-Za-z0-9._-]+)",
                r"Because ([A-Za-z0-9._-]+)\S* was not found",
                r"No solution found when resolving dependencies:.*?([A-Za-z0-9._-]+)"):
        m = re.search(pat, text, re.S)
        if m:
            return m.group(1)
    return None


def switch(target):
    """`venv` -> target in one rename; returns what it pointed to before.
    A venv made by hand is kept, moved into venvs/ (its interpreter still
    runs from there), never deleted."""
    previous = None
    if os.path.islink("venv"):
        previous = os.readlink("venv")
    elif os.path.isdir("venv"):
        previous = os.path.join("venvs", "adopted-" + time.strftime("%Y%m%dT%H%M%S", time.gmtime()))
        os.rename("venv", previous)
    elif os.path.exists("venv"):
        return False
    tmp = "venv.switch-%d" % os.getpid()
    os.symlink(target, tmp)
    os.replace(tmp, "venv")
    if previous:
        tmp = "venvs/previous.switch-%d" % os.getpid()
        os.symlink(os.path.relpath(previous, "venvs"), tmp)
        os.replace(tmp, "venvs/previous")
    return previous


def is_build(target):
    """A target that `switch` may point venv at: venvs/<name> with a python."""
    parts = os.path.normpath(target).split(os.sep)
    return (len(parts) == 2 and parts[0] == "venvs" and parts[1] not in ("", ".", "..", "previous")
            and not os.path.islink(target) and os.path.isfile(os.path.join(target, "bin", "python")))


def adopt():
    """A hand-made venv/ directory becomes venvs/adopted-*, linked from venv,
    so that the environment in use is always a link to switch back to."""
    if os.path.islink("venv") or not os.path.exists("venv"):
        return
    if not os.path.isdir("venv"):
        done(1, error="%s/venv is neither a directory nor a link: move it away" % code_root)
    os.makedirs("venvs", mode=0o750, exist_ok=True)
    kept = os.path.join("venvs", "adopted-" + time.strftime("%Y%m%dT%H%M%S", time.gmtime()))
    os.rename("venv", kept)
    tmp = "venv.switch-%d" % os.getpid()
    os.symlink(kept, tmp)
    os.replace(tmp, "venv")


def in_use():
    return os.path.normpath(os.readlink("venv")) if os.path.islink("venv") else None


def pip_skipped(out):
    """The requirements pip said it ignored, their markers excluding this host."""
    return [{"name": m.group(1), "marker": m.group(2)}
            for m in re.finditer(r"Ignoring ([A-Za-z0-9._-]+): markers '(.*?)' don't match", out)]


def prunable(names, live):
    """Of the entries of venvs/, the built environments (venvs/<id>) beyond
    the KEEP newest, never one of live (normalized paths): the live and the
    previous environment. Adopted ones are never built ones."""
    builds = sorted(d for d in names if re.match(r"^\d{8}T\d{6}-\d+$", d))
    return [p for p in (os.path.join("venvs", d) for d in builds[:-KEEP]) if os.path.normpath(p) not in live]


def main(argv):
    global code_root
    mode, code_root = argv[1:3]
    os.umask(0o027)
    try:
        os.chdir(code_root)
    except OSError as e:
        done(2, error="cannot enter the code root %s: %s" % (code_root, e.strerror))
    if not os.access(".", os.W_OK):
        done(2, error="the service user cannot write the code root %s: it makes venvs/ and the venv link there; "
                      "give it the code root (chown) as the program's guide does" % code_root)
    if os.path.islink("venvs") or (os.path.exists("venvs") and not os.path.isdir("venvs")):
        done(2, error="%s/venvs is not a directory (a link?): move it away" % code_root)
    if mode == "adopt":
        adopt()
        done(0, venv=in_use())
    if mode == "switch":
        target = argv[3]
        adopt()
        before = in_use()
        if target == "none":
            if before is not None:
                os.unlink("venv")
            done(0, venv=None, previous=before)
        if not is_build(target):
            done(1, error="%s/%s is not an environment built here (no bin/python): build one with jarvisctl venv build"
                 % (code_root, target))
        if before != os.path.normpath(target):
            switch(os.path.normpath(target))
        done(0, venv=os.path.normpath(target), previous=before)
    if mode == "rollback":
        if not os.path.islink("venvs/previous"):
            done(1, error="no previous environment to go back to in %s/venvs" % code_root)
        back = os.path.normpath(os.path.join("venvs", os.readlink("venvs/previous")))
        if not os.path.isfile(os.path.join(back, "bin", "python")):
            done(1, error="the previous environment %s has no bin/python" % back)
        previous = switch(back)
        if previous is False:
            done(1, error="%s/venv is neither a directory nor a link: move it away" % code_root)
        done(0, venv=back, previous=previous)
    requirements, wheelhouse, installer, base = argv[3:7]
    reader = argv[7] if len(argv) > 7 else None
    switching = (argv[8] if len(argv) > 8 else "switch") == "switch"
    if requirements == "-":
        requirements_text = sys.stdin.buffer.read()
    elif os.path.isfile(requirements):
        with open(requirements, "rb") as f:
            requirements_text = f.read()
    else:
        done(2, error="%s is missing: the environment is built from it" % requirements)
    if wheelhouse and not os.path.isdir(wheelhouse):
        done(2, error="the wheelhouse %s is not a directory" % wheelhouse)
    if installer == "auto":
        installer = "uv" if shutil.which("uv") else "pip"
    os.makedirs("venvs", mode=0o750, exist_ok=True)
    ident = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-%d" % os.getpid()
    new = os.path.join("venvs", ident)
    t0 = time.monotonic()
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    # --copies: the environment's own binary, so /proc/PID/exe names it (uv
    # venv can only link to the base). uv installs into it; pip comes with it.
    if installer == "uv":
        make = [base, "-m", "venv", "--copies", "--without-pip", new]
    else:
        make = [base, "-m", "venv", "--copies", new]
    r = subprocess.run(make, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        shutil.rmtree(new, ignore_errors=True)
        err = last_error(r.stdout + r.stderr)
        hint = " (install python3-venv)" if "ensurepip" in err or "python3-venv" in r.stdout + r.stderr else ""
        done(1, error="cannot create the environment with %s: %s%s" % (base, err, hint), installer=installer)
    source = ["--no-index", "--find-links", wheelhouse] if wheelhouse else []
    python = os.path.join(new, "bin", "python")
    requirements = os.path.join(new, "requirements.txt")
    with open(requirements, "wb") as f:
        f.write(requirements_text)
    if installer == "uv":
        install = ["uv", "pip", "install", "--python", python, "-r", requirements] + source
    else:
        install = [python, "-m", "pip", "install", "-r", requirements] + source
    r = subprocess.run(install, capture_output=True, text=True, env=env)
    out = r.stdout + r.stderr
    skipped = pip_skipped(out)
    if r.returncode != 0:
        shutil.rmtree(new, ignore_errors=True)
        done(1, error=last_error(out), requirement=failed_name(out), skipped=skipped, installer=installer,
             seconds=round(time.monotonic() - t0, 2))
    if reader:
        with open(requirements, "rb") as f:
            r = subprocess.run([python, "-I", "-c", reader], stdin=f, capture_output=True, text=True, env=env)
        try:
            results = json.loads(r.stdout)["results"]
        except (ValueError, KeyError, TypeError):
            shutil.rmtree(new, ignore_errors=True)
            done(1, error="the new environment cannot list its packages: " + last_error(r.stderr), installer=installer)
        unmet = [x for x in results if x.get("kind") in ("missing", "mismatch")]
        if unmet:
            shutil.rmtree(new, ignore_errors=True)
            x = unmet[0]
            done(1, requirement=x["name"], installer=installer, skipped=skipped,
                 error="%s installed %s%s as %s" % (installer, x["name"], x.get("spec") or "",
                                                      x.get("installed") or "nothing"))
        if not skipped:
            skipped = [{"name": x["name"], "marker": x.get("marker") or ""} for x in results
                       if x.get("kind") == "skipped"]
    built = round(time.monotonic() - t0, 2)
    if switching:
        previous = switch(new)
        if previous is False:
            shutil.rmtree(new, ignore_errors=True)
            done(1, error="%s/venv is neither a directory nor a link: move it away" % code_root)
    else:
        previous = in_use()
    # Prune built environments beyond KEEP, never the live or previous one,
    # never an adopted one.
    live = {os.path.normpath(new), os.path.normpath(previous or "")}
    pruned = prunable(os.listdir("venvs"), live)
    for p in pruned:
        shutil.rmtree(p, ignore_errors=True)
    done(0, venv=new, previous=previous, skipped=skipped, installer=installer, seconds=built, pruned=pruned)


if __name__ == "__main__":
    main(sys.argv)
