# jarvisctl deploy's worker on a host: sent over ssh on every call and run
# by root with the system python3 (the bot needs one anyway), so the host
# needs no jarvisctl of the client's version.
#
# Every path below the code root is writable by the service user, so it is
# hostile here: each directory is opened from its parent's descriptor with
# O_NOFOLLOW, files are opened with O_NOFOLLOW|O_NONBLOCK and checked with
# fstat, new files are made O_EXCL and renamed into place, and owners and
# modes change through descriptors.
#
# Commands (output: one JSON object on stdout):
#   plan  ROOT FROM TO [--take-over P]... [--store DIR]
#                                               what apply would do, and the
#                                               space it and the store need;
#                                               no writes
#   apply ROOT FROM TO --src DIR... [--take-over P]... [--id ID] [--lenient]
#         [--env-new F --env-backup F | --env-restore F | --env-remove]
#         [--pause-after N] [--pause-staging N]
#   verify STORE MANIFEST                       the store holds the manifest
#   compile STORE (--python P | --launcher ROOT) [--owner U:G]
#         [--entry-script PATH | --entry-module NAME]
#                                               compiles in memory the files
#                                               listed in the data (one path
#                                               a line) with the bot's
#                                               interpreter, as the service
#                                               user; judges each broken one
#                                               run or not run (see judge)
#   clean ROOT FROM TO                          the deploy that moved the code
#                                               from FROM to TO is over: the
#                                               old files kept aside and the
#                                               temporary files beside both
#                                               manifests' paths go, then the
#                                               directories FROM ships and TO
#                                               does not, when empty
#
# FROM and TO are manifests ("-" for none). A manifest line is
#   KIND<TAB>MODE<TAB>USER:GROUP<TAB>SIZE<TAB>SHA256<TAB>PATH
# with KIND f (file) or d (directory); PATH is relative, '/'-separated.
#
# The rule (docs/design.md, "Who owns a file"): a path is written or removed only
# when the live file is missing or holds content that FROM or TO ships there.
# Anything else is someone else's file: a conflict, never touched. The same
# rule run from TO back to FROM undoes a swap, even a half-done one: each
# file is always wholly old, wholly new, or absent (rename is atomic).
#
# apply runs in two phases, so that a full disk cannot stop it half way:
# first every new file is written beside its target (a temporary name;
# all of them synced, one sync per filesystem), and the new directories made; only then the deletes and the
# renames, which need no new data blocks. A staging that fails removes
# what it wrote: nothing live changed. So an undo after it has nothing to
# copy, and needs no space either.
#
# The old files a forward swap replaces or deletes stay beside their path
# (`.NAME.jarvis-deploy-old`: a hard link made before the rename over it
# or the unlink, which takes no data blocks), so that its undo (--lenient)
# needs no space either: it renames an old file back when its size and
# sha256, read through an O_NOFOLLOW descriptor, are what it puts back and
# it has no other link, and copies from the stores only when there is no
# such file. `clean`, run once the deploy is over (verified or undone),
# removes them; a forward swap removes those of a deploy never cleaned at
# its start (an undo does not: it needs them).

import errno
import grp
import hashlib
import json
import os
import pwd
import re
import signal
import stat
import sys
import time

TMP_SUFFIX = ".jarvis-deploy-tmp"
OLD_SUFFIX = ".jarvis-deploy-old"
PAUSE_MARK = os.environ.get("JARVIS_DEPLOY_PAUSE_MARK", "/run/jarvis-deploy-paused")
# Held while apply changes the live code (and only then), so that the host's
# own `jarvisctl settle` can wait for a swap to end without waiting on the
# step lock, which a step that starts the bot (dpkg, a restart) also holds.
SWAP_LOCK = os.environ.get("JARVIS_DEPLOY_SWAP_LOCK", "/run/jarvis-deploy-swap.lock")
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
ENV_MAX = 1 << 20
# A hash reads at most the size the manifest gives plus one byte, so that a
# file of the service user's that grows (to a sparse 8 TiB, say) after its
# size was looked at holds the step lock for no longer than a read of that
# size. Without a size to expect: this much, more than any code file.
HASH_MAX = 1 << 30
# What the client sent on stdin after this script (see remote.rs).
DATA = globals().get("DATA", b"")


class Fatal(Exception):
    """The worker's error (exit 2); `extra` goes into its report, e.g.
    untouched: true when nothing live changed."""

    def __init__(self, msg, **extra):
        Exception.__init__(self, msg)
        self.extra = extra


def check_rel(p):
    # Once per manifest line: substring tests, not a loop per component.
    q = "/" + p + "/"
    if (not p or "//" in q or "/./" in q or "/../" in q
            or "\0" in p or "\n" in p or "\t" in p or "\r" in p):
        raise Fatal("bad path in manifest: %r" % p)


class Entry:
    __slots__ = ("kind", "mode", "owner", "size", "sha", "path")

    def __init__(self, kind, mode, owner, size, sha, path):
        self.kind, self.mode, self.owner = kind, mode, owner
        self.size, self.sha, self.path = size, sha, path

    def line(self):
        return "%s\t%04o\t%s\t%d\t%s\t%s" % (
            self.kind, self.mode, self.owner, self.size, self.sha, self.path)


def load(path):
    if path == "-":
        return {}
    if path == "@data":
        # The manifest sent on stdin after this script (dry runs, plans).
        return parse(DATA.decode("utf-8"), path)
    with open(path, "rb") as f:
        return parse(f.read().decode("utf-8"), path)


def parse(text, path):
    m = {}
    for n, raw in enumerate(text.split("\n"), 1):
        if not raw or raw.startswith("#"):
            continue
        parts = raw.split("\t")
        if len(parts) != 6 or parts[0] not in ("f", "d"):
            raise Fatal("%s:%d: not a manifest line" % (path, n))
        kind, mode, owner, size, sha, p = parts
        check_rel(p)
        m[p] = Entry(kind, int(mode, 8), owner, int(size), sha, p)
    return m


_IDS = {}


def ids_of(owner):
    if owner not in _IDS:
        _IDS[owner] = _ids_of(owner)
    return _IDS[owner]


def _ids_of(owner):
    user, _, group = owner.partition(":")
    try:
        pw = pwd.getpwnam(user)
        uid = pw.pw_uid
        gid = grp.getgrnam(group).gr_gid if group else pw.pw_gid
    except KeyError:
        raise Fatal("the owner %s does not exist on this host (install the package first: it creates the user)" % owner)
    return uid, gid


def open_root(path, create_owner=None):
    """The code root, walked from / without following any symbolic link;
    missing components are made (0750, owner create_owner) when given."""
    if not path.startswith("/"):
        raise Fatal("%s is not an absolute path" % path)
    fd = os.open("/", DIR_FLAGS)
    for c in [c for c in path.split("/") if c]:
        try:
            nfd = os.open(c, DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            if create_owner is None:
                os.close(fd)
                return None
            os.mkdir(c, 0o700, dir_fd=fd)
            nfd = os.open(c, DIR_FLAGS, dir_fd=fd)
            os.fchown(nfd, *create_owner)
            os.fchmod(nfd, 0o750)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise Fatal("%s: %s is a symbolic link or not a directory; give the real path in the unit's WorkingDirectory=" % (path, c))
            raise
        os.close(fd)
        fd = nfd
    return fd


# A file whose inode changed this recently may change again within the
# timestamps' grain without showing it: its digest is not kept.
RACY_NS = 2 * 10**9


class Tree:
    """Directory descriptors below one root, cached by relative path, and
    the digests of its files, kept across runs (`hashes`, path -> [dev, ino,
    size, mtime_ns, ctime_ns, sha]): a file whose inode, size, mtime and
    ctime are those recorded is not read again. ctime cannot be set back by
    the file's owner, so a change the bot makes is never a hit."""

    def __init__(self, root_fd, hashes=None):
        self.fds = {"": root_fd}
        self.hashes = hashes if hashes is not None else {}

    def close(self):
        for fd in self.fds.values():
            os.close(fd)
        self.fds = {}

    def dir(self, rel):
        """fd of directory rel, or raise FileNotFoundError / Blocked."""
        if rel in self.fds:
            return self.fds[rel]
        parent, _, name = rel.rpartition("/")
        pfd = self.dir(parent)
        try:
            fd = os.open(name, DIR_FLAGS, dir_fd=pfd)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise Blocked(rel)
            raise
        if len(self.fds) > 512:
            for k in [k for k in self.fds if k]:
                os.close(self.fds.pop(k))
        self.fds[rel] = fd
        return fd

    def forget(self, rel):
        fd = self.fds.pop(rel, None)
        if fd is not None:
            os.close(fd)

    def lstat(self, rel):
        """('missing'|'file'|'dir'|'other'|'blocked', stat or None)."""
        parent, _, name = rel.rpartition("/")
        try:
            pfd = self.dir(parent)
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return "missing", None
        except Blocked:
            return "blocked", None
        except NotADirectoryError:
            return "blocked", None
        if stat.S_ISDIR(st.st_mode):
            return "dir", st
        if stat.S_ISREG(st.st_mode):
            return "file", st
        return "other", st

    def digest(self, rel, size, seen=None):
        """The file's sha256 when it holds at most size bytes, else None.
        `seen`: its lstat just taken; a kept digest for that very inode,
        size, mtime and ctime is the answer without opening the file."""
        kept = self.hashes.get(rel)
        if (seen is not None and kept is not None and stat.S_ISREG(seen.st_mode)
                and seen.st_size <= size
                and kept[:5] == [seen.st_dev, seen.st_ino, seen.st_size,
                                 seen.st_mtime_ns, seen.st_ctime_ns]):
            return kept[5]
        parent, _, name = rel.rpartition("/")
        fd = os.open(name, FILE_FLAGS, dir_fd=self.dir(parent))
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            key = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
            kept = self.hashes.get(rel)
            if kept is not None and kept[:5] == key and st.st_size <= size:
                return kept[5]
            sha = sha256_of(fd, size)
            after = os.fstat(fd)
            if (sha is not None and [after.st_size, after.st_mtime_ns, after.st_ctime_ns] == key[2:]
                    and time.time_ns() - st.st_ctime_ns > RACY_NS):
                self.hashes[rel] = key + [sha]
            else:
                self.hashes.pop(rel, None)
            return sha
        finally:
            os.close(fd)


def sha256_of(fd, size=None, copy_to=None):
    """The sha256 of what is left to read in fd when that is at most size
    bytes (HASH_MAX when None), else None; writes it to copy_to too when
    given: one pass for a check and a copy. Reads at most size + 1 bytes."""
    left = (HASH_MAX if size is None else size) + 1
    h = hashlib.sha256()
    while True:
        b = os.read(fd, min(1 << 20, left))
        if not b:
            return h.hexdigest()
        left -= len(b)
        if left == 0:
            return None
        h.update(b)
        view = memoryview(b)
        while copy_to is not None and view:
            view = view[os.write(copy_to, view):]


class Blocked(Exception):
    pass


def live_sha(tree, rel, st, wanted):
    """The live file's sha256 when its size matches one of the wanted
    entries (a size mismatch cannot be equal content: no need to read)."""
    if not any(e is not None and e.kind == "f" and e.size == st.st_size for e in wanted):
        return None
    # Bigger now than when it matched: changed, whatever it grew to.
    return tree.digest(rel, st.st_size, st)


def plan(tree, old, new, take_over):
    """What moving the live tree from manifest old to manifest new does."""
    p = {"put": [], "replace": [], "same": [], "adopted": [], "delete": [],
         "mkdir": [], "rmdir": [], "kept_changed": [], "taken_over": [],
         "conflicts": [], "fix": []}
    seen = {}
    for rel in sorted(new):
        e = new[rel]
        o = old.get(rel)
        kind, st = tree.lstat(rel)
        if e.kind == "d":
            if kind == "missing":
                p["mkdir"].append(rel)
            elif kind != "dir":
                p["conflicts"].append({"path": rel, "why": describe(kind, "a directory")})
            continue
        if kind == "missing":
            p["put"].append(rel)
            continue
        if kind != "file":
            p["conflicts"].append({"path": rel, "why": describe(kind, "a file")})
            continue
        sha = live_sha(tree, rel, st, [e, o])
        seen[rel] = (st.st_ino, st.st_size, st.st_mtime_ns)
        if sha == e.sha:
            (p["same"] if o is not None and o.kind == "f" else p["adopted"]).append(rel)
            if (st.st_mode & 0o7777) != e.mode or (st.st_uid, st.st_gid) != ids_of(e.owner):
                p["fix"].append(rel)
        elif o is not None and o.kind == "f" and sha == o.sha:
            p["replace"].append(rel)
        elif rel in take_over:
            p["taken_over"].append(rel)
        elif o is not None and o.kind == "f":
            p["conflicts"].append({"path": rel, "why": "shipped by the deploy in effect, but changed on the host since"})
        else:
            p["conflicts"].append({"path": rel, "why": "a file that no deploy shipped is there (the bot's state, or the operator's)"})
    for rel in sorted(old, key=lambda r: (-r.count("/"), r)):
        if rel in new:
            continue
        o = old[rel]
        kind, st = tree.lstat(rel)
        if o.kind == "d":
            if kind == "dir":
                p["rmdir"].append(rel)
            continue
        if kind != "file":
            continue
        sha = live_sha(tree, rel, st, [o])
        if sha == o.sha:
            p["delete"].append(rel)
            seen[rel] = (st.st_ino, st.st_size, st.st_mtime_ns)
        else:
            p["kept_changed"].append(rel)
    return p, seen


def describe(kind, want):
    return {
        "dir": "a directory is there, where the code ships %s" % want,
        "file": "a file is there, where the code ships %s" % want,
        "other": "a symbolic link or special file is there, where the code ships %s" % want,
        "blocked": "a parent of it is a file or a symbolic link, not a directory",
    }.get(kind, kind)


# Entries the unshipped count looks at, at most: the tree is the service
# user's, and the count (shown, never acted on) runs under the step lock.
SCAN_MAX = int(os.environ.get("JARVIS_DEPLOY_SCAN_MAX", "200000"))


def count_unshipped(root_fd, known):
    """Regular files below the root that no manifest lists (never followed
    through links, never read), and whether the count stopped at SCAN_MAX
    entries (then it is a lower bound)."""
    n, seen = 0, 0
    stack = [("", os.dup(root_fd))]
    while stack:
        rel, fd = stack.pop()
        try:
            with os.scandir(fd) as it:
                for d in it:
                    seen += 1
                    if seen > SCAN_MAX:
                        for _, other in stack:
                            os.close(other)
                        return n, False
                    r = d.name if not rel else rel + "/" + d.name
                    try:
                        if d.is_dir(follow_symlinks=False):
                            stack.append((r, os.open(d.name, DIR_FLAGS, dir_fd=fd)))
                        elif r not in known:
                            n += 1
                    except OSError:
                        continue
        finally:
            os.close(fd)
    return n, True


def copy_in(tree, rel, e, srcs, owner_ids):
    """Writes e's content from the first store that holds it into a new
    file beside rel; returns the temporary name (in rel's directory)."""
    parent, _, name = rel.rpartition("/")
    dfd = tree.dir(parent)
    tmp = "." + name + TMP_SUFFIX
    try:
        os.unlink(tmp, dir_fd=dfd)
    except FileNotFoundError:
        pass
    for src in srcs:
        try:
            sfd = os.open(os.path.join(src, rel), FILE_FLAGS)
        except OSError:
            continue
        try:
            st = os.fstat(sfd)
            if not stat.S_ISREG(st.st_mode) or st.st_size != e.size:
                continue
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
            try:
                if sha256_of(sfd, e.size, copy_to=out) != e.sha:
                    os.unlink(tmp, dir_fd=dfd)
                    continue
                os.fchown(out, *owner_ids)
                os.fchmod(out, e.mode)
                # Made durable with the others, one sync per filesystem
                # (sync_filesystems), before any rename puts it live.
            except BaseException:
                # A full disk half way through: no partial copy stays.
                try:
                    os.unlink(tmp, dir_fd=dfd)
                except OSError:
                    pass
                raise
            finally:
                os.close(out)
            return tmp
        finally:
            os.close(sfd)
    raise Fatal("no kept copy of %s with its shipped content (sha256 %s) in %s" % (rel, e.sha[:12], ", ".join(srcs)))


def unchanged(tree, rel, seen):
    kind, st = tree.lstat(rel)
    if rel not in seen:
        return kind == "missing"
    return kind == "file" and (st.st_ino, st.st_size, st.st_mtime_ns) == seen[rel]


def pause(n, after):
    if after is None or n != after:
        return
    with open(PAUSE_MARK, "w") as f:
        f.write("%d\n" % os.getpid())
    t0 = time.time()
    while os.path.exists(PAUSE_MARK) and time.time() - t0 < 300:
        time.sleep(0.1)


# What a swap leaves free on the code root's filesystem beyond what it
# writes: directory blocks, the .env, and what the bot writes meanwhile.
MARGIN = 8 << 20


def human(n):
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return "%.1f %s" % (n / size, unit)
    return "%d bytes" % n


def mount_of(fd):
    """(mount point, filesystem type) of the filesystem fd is on, from
    /proc/self/mountinfo; (None, None) when it cannot be told (btrfs
    subvolumes have devices of their own)."""
    dev = os.fstat(fd).st_dev
    want = "%d:%d" % (os.major(dev), os.minor(dev))
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 4 and parts[2] == want and "-" in parts:
                    return parts[4].replace("\\040", " "), parts[parts.index("-") + 1]
    except OSError:
        pass
    return None, None


def room(fd, path, entries, dirs=0):
    """The space on fd's filesystem against what writing `entries` (and
    making `dirs` directories) takes there."""
    st = os.fstatvfs(fd)
    bs = st.f_frsize or 4096
    if os.geteuid() == 0:
        # Root may use the blocks and inodes kept back for it (f_bfree,
        # f_ffree), not only what other users may (f_bavail, f_favail):
        # a swap that fits only in them still fits.
        free, inodes = st.f_bfree * bs, st.f_ffree
    else:
        free, inodes = st.f_bavail * bs, st.f_favail
    mount, fstype = mount_of(fd)
    return {"path": path, "mount": mount or path, "fstype": fstype,
            "free": free, "needed": sum(-(-e.size // bs) * bs for e in entries),
            "margin": MARGIN if entries else 0,
            "free_inodes": inodes, "needed_inodes": len(entries) + dirs}


def room_at(path, entries, dirs=0):
    """room() for a directory that may not exist yet: its nearest existing
    parent's filesystem (looked at, never written)."""
    while True:
        try:
            fd = os.open(path, DIR_FLAGS)
            break
        except OSError:
            if path in ("/", ""):
                return None
            path = os.path.dirname(path.rstrip("/")) or "/"
    try:
        return room(fd, path, entries, dirs)
    finally:
        os.close(fd)


def short(r):
    """Whether room r lacks space for its writes (a swap that writes
    nothing needs nothing: an undo after a failed staging)."""
    if r is None or (r["needed"] == 0 and r["needed_inodes"] == 0):
        return False
    return r["free"] < r["needed"] + r["margin"] or r["free_inodes"] < r["needed_inodes"]


def where(r):
    return "%s (%s)" % (r["mount"], r["fstype"]) if r["fstype"] else r["mount"]


def room_text(r):
    """What the swap needs on the filesystem and what it has."""
    return ("the swap writes %s (%d new file(s) and director(ies)) on %s and keeps %s spare; "
            "%s (%d inodes) is free there" % (
                human(r["needed"]), r["needed_inodes"], where(r), human(r["margin"]),
                human(r["free"]), r["free_inodes"]))


def free_hint(r):
    want = r["needed"] + r["margin"] - r["free"]
    return "free %sspace on %s (what is big: du -xh --max-depth=2 %s | sort -h | tail), then deploy again" % (
        ("at least %s of " % human(want)) if want > 0 else "", r["mount"], r["mount"])


def remove_stale_temps(tree, paths, suffixes=(TMP_SUFFIX,)):
    """Removes the temporary files that an earlier swap cut off (killed,
    power lost) left beside `paths` (and with OLD_SUFFIX the old files a
    deploy kept aside): only the exact names this worker gives them, never
    one a manifest ships, only regular files, through the tree's no-follow
    descriptors. Returns how many went."""
    n = 0
    for rel in sorted(paths):
        parent, _, name = rel.rpartition("/")
        for suffix in suffixes:
            tmp = "." + name + suffix
            if (parent + "/" + tmp if parent else tmp) in paths:
                continue
            try:
                dfd = tree.dir(parent)
                st = os.stat(tmp, dir_fd=dfd, follow_symlinks=False)
                if stat.S_ISREG(st.st_mode):
                    os.unlink(tmp, dir_fd=dfd)
                    n += 1
            except (OSError, Blocked):
                continue
    return n


def replaced_by(from_path):
    """The manifest the deploy in effect replaced (the `before.tsv` beside
    its manifest.tsv, FROM): its swap kept the files it removed aside under
    their paths, which neither FROM nor TO may list."""
    if not from_path or os.path.basename(from_path) != "manifest.tsv":
        return {}
    before = os.path.join(os.path.dirname(from_path), "before.tsv")
    return load(before) if os.path.exists(before) else {}


def remove_dirs(tree, rels):
    """rmdir each of rels in turn, ignoring the ones that are not empty,
    gone or not walkable: what holds anything stays."""
    for rel in rels:
        parent, _, name = rel.rpartition("/")
        tree.forget(rel)
        try:
            os.rmdir(name, dir_fd=tree.dir(parent))
        except (OSError, Blocked):
            pass


def remove_empty_dirs(tree, old, keep):
    """The directories manifest old ships and none of `keep` does, deepest
    first, when empty (rmdir: one holding anything stays)."""
    remove_dirs(tree, sorted((r for r, e in old.items() if e.kind == "d" and not any(r in k for k in keep)),
                             key=lambda r: (-r.count("/"), r)))


def aside_name(rel, shipped):
    """The name, in rel's directory, that keeps rel's old file while its
    deploy is not over; None when a manifest ships a file of that name."""
    parent, _, name = rel.rpartition("/")
    aside = "." + name + OLD_SUFFIX
    return None if (parent + "/" + aside if parent else aside) in shipped else aside


def keep_aside(dfd, rel, name, shipped):
    """Keeps the file `name` (rel, in directory dfd) aside as a hard link:
    no new data blocks. Never onto anything already there (link fails
    then), never through a symbolic link; False when not kept (the undo
    copies from the stores instead)."""
    aside = aside_name(rel, shipped)
    if aside is None:
        return False
    try:
        os.link(name, aside, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
        return True
    except OSError:
        return False


def open_aside(tree, rel, shipped):
    """rel's kept-aside file opened without following a link, when it is a
    regular file with one link only (a planted hard link to a file not
    the tree's is never adopted), else None."""
    aside = aside_name(rel, shipped)
    if aside is None:
        return None
    try:
        fd = os.open(aside, FILE_FLAGS, dir_fd=tree.dir(rel.rpartition("/")[0]))
    except (OSError, Blocked):
        return None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        return None
    return fd


def kept_old(tree, rel, e, shipped):
    """The inode of rel's file kept aside when it holds exactly e's
    content (size, then sha256 through the descriptor), else None: the
    code root is the service user's, a file planted there is not trusted."""
    fd = open_aside(tree, rel, shipped)
    if fd is None:
        return None
    try:
        st = os.fstat(fd)
        if st.st_size != e.size or sha256_of(fd, e.size) != e.sha:
            return None
        return st.st_ino
    finally:
        os.close(fd)


def reuse_aside(tree, rel, e, ino, shipped):
    """An undo's file that its old file kept aside holds: given the
    shipped owner and mode through its descriptor, renamed back in phase
    two. (its name, inode), as a staged file's."""
    fd = open_aside(tree, rel, shipped)
    if fd is None:
        raise Fatal("%s: the old file kept aside went while the undo ran; run the undo again" % rel)
    try:
        if os.fstat(fd).st_ino != ino:
            raise Fatal("%s: the old file kept aside was replaced while the undo ran; run the undo again" % rel)
        os.fchown(fd, *ids_of(e.owner))
        os.fchmod(fd, e.mode)
    finally:
        os.close(fd)
    return aside_name(rel, shipped), ino


def stage(tree, new, p, a, writes, r, kept):
    """Phase one: the new directories, and every file to write as a
    temporary file beside its target (or, in an undo, its old file kept
    aside: `kept`); {rel: (name, inode)}. On any failure, what it made is
    removed again and the error says that nothing live changed."""
    made, temps, doing = [], {}, None
    try:
        pause(0, a["pause_staging"])
        for rel in sorted(p["mkdir"], key=lambda r: r.count("/")):
            e = new[rel]
            parent, _, name = rel.rpartition("/")
            pfd = tree.dir(parent)
            try:
                os.mkdir(name, 0o700, dir_fd=pfd)
                made.append(rel)
            except FileExistsError:
                pass
            fd = tree.dir(rel)
            os.fchown(fd, *ids_of(e.owner))
            os.fchmod(fd, e.mode)
        for i, rel in enumerate(writes, 1):
            e, doing = new[rel], rel
            if rel in kept:
                temps[rel] = reuse_aside(tree, rel, e, kept[rel], a["shipped"])
                continue
            tmp = copy_in(tree, rel, e, a["src"], ids_of(e.owner))
            st = os.stat(tmp, dir_fd=tree.dir(rel.rpartition("/")[0]), follow_symlinks=False)
            temps[rel] = (tmp, st.st_ino)
            pause(i, a["pause_staging"])
        doing = None
        sync_filesystems(tree, writes)
        if a["env_new"] and a.get("env_ids"):
            doing = ".env"
            tmp = stage_new_env(tree, a)
            temps[".env"] = (tmp, os.stat(tmp, dir_fd=tree.dir(""), follow_symlinks=False).st_ino)
        return temps
    except Exception as e:
        unstage(tree, temps)
        remove_dirs(tree, reversed(made))
        if isinstance(e, OSError):
            why = "%s%s" % (e.strerror or e, " (writing %s)" % doing if doing else "")
        else:
            why = str(e) or repr(e)
        full = isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)
        try:
            # Measured again, now that the staged files went, on the
            # filesystem of the directory being written: a mount below the
            # code root (its own disk) is the one that filled.
            parent = (doing or "").rpartition("/")[0] if doing != ".env" else ""
            r = room(tree.dir(parent), os.path.join(a["root"], parent) if parent else r["path"],
                     [new[w] for w in writes if w not in kept], len(p["mkdir"]))
        except (OSError, Blocked):
            pass
        raise Fatal("staging the new files in %s failed after %d of %d: %s; every staged file was removed, "
                    "nothing live changed. %s%s" % (
                        r["path"], len(temps), len(writes), why, room_text(r),
                        ("; " + free_hint(r)) if full or short(r) else ""),
                    untouched=True, space={"code": r})


def sync_filesystems(tree, rels):
    """Every staged file on disk before the swap renames it live: one
    syncfs(2) per filesystem the files were written on (a first deploy of
    5,000 files took 10 s at one fsync each). Where syncfs cannot be called,
    sync(2)."""
    fds = {}
    for rel in rels:
        fd = tree.dir(rel.rpartition("/")[0])
        fds.setdefault(os.fstat(fd).st_dev, fd)
    if not fds:
        return
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        syncfs = libc.syncfs
    except (OSError, AttributeError):
        os.sync()
        return
    for fd in fds.values():
        if syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, "syncing the staged files: " + os.strerror(err))


def unstage(tree, temps):
    """Removes the staged temporary files that are still ours (an old file
    kept aside stays: the undo needs it)."""
    for rel, (tmp, ino) in temps.items():
        if not tmp.endswith(TMP_SUFFIX):
            continue
        try:
            dfd = tree.dir(rel.rpartition("/")[0])
            if os.stat(tmp, dir_fd=dfd, follow_symlinks=False).st_ino == ino:
                os.unlink(tmp, dir_fd=dfd)
        except (OSError, Blocked):
            pass


def apply(tree, old, new, a):
    shipped = {r for m in (old, new) for r, e in m.items() if e.kind == "f"} | {".env"}
    a["shipped"] = shipped
    undo = a["lenient"]
    result = {"stale_removed": remove_stale_temps(tree, shipped), "stale_old_removed": 0}
    p, seen = plan(tree, old, new, a["take_over"])
    result.update(p)
    if p["conflicts"] and not a["lenient"]:
        return result, 3
    if not undo:
        # A forward swap keeps old files aside: those of a deploy never
        # cleaned go first (a refused swap leaves them: an undo of the
        # deploy in effect may still want them). An undo needs them.
        before = replaced_by(a.get("from"))
        result["stale_old_removed"] = remove_stale_temps(
            tree, shipped | {r for r, e in before.items() if e.kind == "f"}, (OLD_SUFFIX,))
        # The directories its swap could not remove for what it kept there.
        remove_empty_dirs(tree, before, [old, new])
    writes = p["put"] + p["replace"] + p["taken_over"]
    kept = {}
    if undo:
        for rel in p["put"] + p["replace"]:
            ino = kept_old(tree, rel, new[rel], shipped)
            if ino is not None:
                kept[rel] = ino
    result["from_aside"] = sorted(kept)
    r = room(tree.dir(""), a["root"], [new[w] for w in writes if w not in kept], len(p["mkdir"]))
    result["space"] = {"code": r}
    if short(r):
        raise Fatal("not enough space for the swap: %s; nothing live changed: %s" % (room_text(r), free_hint(r)),
                    untouched=True, space={"code": r})
    temps = stage(tree, new, p, a, writes, r, kept)

    # Phase two: deletes and renames only. The staged files must still be
    # the ones written: one the service user swapped for another is not
    # what the manifest ships.
    for rel, (tmp, ino) in temps.items():
        dfd = tree.dir(rel.rpartition("/")[0])
        try:
            same = os.stat(tmp, dir_fd=dfd, follow_symlinks=False).st_ino == ino
        except FileNotFoundError:
            same = False
        if not same:
            unstage(tree, temps)
            raise Fatal("%s was replaced or removed while the deploy ran; nothing live changed: "
                        "deploy again" % os.path.join(a["root"], rel.rpartition("/")[0], tmp), untouched=True)
    synced = set()
    n = 0

    def done(rel):
        nonlocal n
        synced.add(rel.rpartition("/")[0])
        n += 1
        pause(n, a["pause_after"])

    # Files that go first, then the directories they leave empty.
    for rel in p["delete"]:
        parent, _, name = rel.rpartition("/")
        if not unchanged(tree, rel, seen):
            result["kept_changed"].append(rel)
            continue
        dfd = tree.dir(parent)
        if not undo:
            keep_aside(dfd, rel, name, shipped)
        os.unlink(name, dir_fd=dfd)
        done(rel)
    kept_dirs = []
    for rel in p["rmdir"]:
        parent, _, name = rel.rpartition("/")
        tree.forget(rel)
        try:
            os.rmdir(name, dir_fd=tree.dir(parent))
            synced.add(parent)
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                raise
            if e.errno != errno.ENOENT:
                kept_dirs.append(rel)
    result["kept_dirs"] = kept_dirs
    synced.update(r.rpartition("/")[0] for r in p["mkdir"])
    raced = []
    for rel in writes:
        tmp = temps[rel][0]
        parent, _, name = rel.rpartition("/")
        dfd = tree.dir(parent)
        if rel in p["taken_over"]:
            aside = "%s.before-deploy-%s" % (name, a["id"])
            os.rename(name, aside, src_dir_fd=dfd, dst_dir_fd=dfd)
        elif not unchanged(tree, rel, seen):
            # Someone wrote it since the plan: theirs now.
            if tmp.endswith(TMP_SUFFIX):
                os.unlink(tmp, dir_fd=dfd)
            raced.append(rel)
            continue
        elif rel in p["replace"] and not undo:
            keep_aside(dfd, rel, name, shipped)
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        done(rel)
    for rel in p["fix"]:
        e = new[rel]
        parent, _, name = rel.rpartition("/")
        fd = os.open(name, FILE_FLAGS, dir_fd=tree.dir(parent))
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                os.fchown(fd, *ids_of(e.owner))
                os.fchmod(fd, e.mode)
        finally:
            os.close(fd)
    for d in synced:
        try:
            os.fsync(tree.dir(d))
        except OSError:
            pass
    if ".env" in temps:
        dfd = tree.dir("")
        if raced and not a["lenient"]:
            os.unlink(temps[".env"][0], dir_fd=dfd)
        else:
            if not undo and tree.lstat(".env")[0] == "file":
                keep_aside(dfd, ".env", ".env", shipped)
            os.rename(temps[".env"][0], ".env", src_dir_fd=dfd, dst_dir_fd=dfd)
            os.fsync(dfd)
    result["raced"] = raced
    result["conflicts"] = [c for c in p["conflicts"]] + [
        {"path": r, "why": "written on the host while the deploy ran"} for r in raced]
    if raced and not a["lenient"]:
        return result, 3
    return result, 0


def read_env(tree):
    """The live .env (bounded, never through a link), or None."""
    kind, st = tree.lstat(".env")
    if kind == "missing":
        return None
    if kind != "file":
        raise Fatal(".env in the code root is not a regular file; move it away, then deploy again")
    fd = os.open(".env", FILE_FLAGS, dir_fd=tree.dir(""))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > ENV_MAX:
            raise Fatal(".env in the code root is not a regular file under 1 MiB")
        chunks = []
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks)
    finally:
        os.close(fd)


def stage_env(tree, data, owner_ids):
    """data as a new .env beside the live one; its temporary name."""
    dfd = tree.dir("")
    tmp = "..env" + TMP_SUFFIX
    try:
        os.unlink(tmp, dir_fd=dfd)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dfd)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fchown(fd, *owner_ids)
        os.fchmod(fd, 0o600)
        os.fsync(fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dfd)
        except OSError:
            pass
        raise
    finally:
        os.close(fd)
    return tmp


def env_aside(tree, data, owner_ids, shipped):
    """The .env kept aside by the swap, when it holds exactly data: given
    its owner and mode, its name; else None."""
    fd = open_aside(tree, ".env", shipped)
    if fd is None:
        return None
    try:
        if os.fstat(fd).st_size != len(data) or os.read(fd, len(data) + 1) != data:
            return None
        os.fchown(fd, *owner_ids)
        os.fchmod(fd, 0o600)
        return aside_name(".env", shipped)
    finally:
        os.close(fd)


def write_env(tree, data, owner_ids, shipped=frozenset()):
    # The same content needs no write (an undo on a full disk), nor does
    # the .env the swap kept aside: renamed back.
    if read_env(tree) == data:
        return
    tmp = env_aside(tree, data, owner_ids, shipped) or stage_env(tree, data, owner_ids)
    dfd = tree.dir("")
    os.rename(tmp, ".env", src_dir_fd=dfd, dst_dir_fd=dfd)
    os.fsync(dfd)


def private_write(path, data):
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.unlink(tmp)
        raise
    finally:
        os.close(fd)
    os.rename(tmp, path)


def stage_new_env(tree, a):
    """--env-new, staged with the files: the .env it replaces kept once
    (a re-run must not overwrite it with the new one), the new one written
    beside the live one. Its temporary name."""
    if not os.path.exists(a["env_backup"]) and not os.path.exists(a["env_backup"] + ".none"):
        old = read_env(tree)
        if old is None:
            private_write(a["env_backup"] + ".none", b"")
        else:
            private_write(a["env_backup"], old)
    with open(a["env_new"], "rb") as f:
        return stage_env(tree, f.read(), a["env_ids"])


def env_step(tree, a, owner_ids):
    """--env-restore (--env-new is part of the swap itself)."""
    if a["env_restore"]:
        if os.path.exists(a["env_restore"]):
            with open(a["env_restore"], "rb") as f:
                write_env(tree, f.read(), owner_ids, a["shipped"])
        elif os.path.exists(a["env_restore"] + ".none"):
            try:
                os.unlink(".env", dir_fd=tree.dir(""))
            except FileNotFoundError:
                pass


def prepare(store, data, linked=None):
    """Deploy store's `code/` made ready for the push: its manifest (data,
    its text) written, its directories made, and every file that the store
    `linked` (the deploy in effect: root's, verified when it was made) holds
    under the same path with the same content by both manifests,
    hard-linked from it. Returns the files left to send, in manifest order:
    only what changed crosses the wire, and rsync never walks the rest."""
    new = parse(data.decode("utf-8"), "manifest")
    for d in ("code", "private"):
        try:
            os.mkdir(os.path.join(store, d), 0o700)
        except FileExistsError:
            pass
    fd = os.open(os.path.join(store, "manifest.tsv"),
                 os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    old, ltree = {}, None
    if linked and os.path.exists(os.path.join(linked, "manifest.tsv")):
        lfd = open_root(os.path.join(linked, "code"))
        if lfd is not None:
            ltree = Tree(lfd)
            old = load(os.path.join(linked, "manifest.tsv"))
    tree = Tree(open_root(os.path.join(store, "code")))
    send = []
    try:
        for rel in sorted(r for r, e in new.items() if e.kind == "d"):
            parent, _, name = rel.rpartition("/")
            try:
                os.mkdir(name, 0o700, dir_fd=tree.dir(parent))
            except FileExistsError:
                pass
        for rel, e in sorted(new.items()):
            if e.kind != "f":
                continue
            o = old.get(rel)
            if (ltree is not None and o is not None and o.kind == "f"
                    and (o.sha, o.size) == (e.sha, e.size) and ltree.lstat(rel)[0] == "file"):
                parent, _, name = rel.rpartition("/")
                try:
                    os.link(name, name, src_dir_fd=ltree.dir(parent),
                            dst_dir_fd=tree.dir(parent), follow_symlinks=False)
                    continue
                except OSError:
                    # Too many links, or a store half made before: sent.
                    pass
            send.append(rel)
    finally:
        tree.close()
        if ltree is not None:
            ltree.close()
    return send


def verify(store, manifest, linked=None, linked_manifest=None):
    """The paths of store that differ from manifest. A file that is the very
    inode of the same path in the store `linked` (rsync's --link-dest: the
    deploy in effect, verified when it was made; root's, so unchanged since),
    with the same content in both manifests, is not read again."""
    fd = open_root(store)
    if fd is None:
        raise Fatal("%s is missing" % store)
    tree = Tree(fd)
    before, lfd = {}, None
    if linked and linked_manifest and os.path.exists(linked_manifest):
        lfd = open_root(linked)
        before = load(linked_manifest) if lfd is not None else {}
    ltree = Tree(lfd) if lfd is not None else None
    bad = []
    try:
        for rel, e in sorted(manifest.items()):
            kind, st = tree.lstat(rel)
            if e.kind == "d":
                if kind != "dir":
                    bad.append(rel)
                continue
            if kind != "file" or st.st_size != e.size:
                bad.append(rel)
                continue
            b = before.get(rel)
            if ltree is not None and b is not None and b.kind == "f" and b.sha == e.sha:
                lkind, lst = ltree.lstat(rel)
                if lkind == "file" and (lst.st_dev, lst.st_ino) == (st.st_dev, st.st_ino):
                    continue
            if tree.digest(rel, e.size, st) != e.sha:
                bad.append(rel)
    finally:
        tree.close()
        if ltree is not None:
            ltree.close()
    return bad


def clean(root, old, new):
    """The deploy that moved the code from manifest old to new is over
    (verified, or undone with old and new the other way round): the old
    files it kept aside, and any temporary file, beside the paths of both
    go; then the directories old ships and new does not that only they
    kept (rmdir: one holding anything else stays)."""
    fd = open_root(root)
    if fd is None:
        return 0
    paths = {r for m in (old, new) for r, e in m.items() if e.kind == "f"} | {".env"}
    tree = Tree(fd)
    try:
        n = remove_stale_temps(tree, paths, (TMP_SUFFIX, OLD_SUFFIX))
        remove_empty_dirs(tree, old, [new])
        return n
    finally:
        tree.close()


# The interpreter the shipped unit's launcher (`jarvisctl venv exec`)
# falls back to when the code root has no venv.
SYSTEM_PYTHON = "/usr/bin/python3"
COMPILE_TIMEOUT = 600
# A file larger than this is not read for imports (it is still compiled).
SCAN_FILE_MAX = 4 << 20

# Run by the bot's interpreter as the service user, the sources on stdin
# (a JSON list of [path, size], a newline, then the bytes): compile() in
# memory, so no byte code is written anywhere, and nothing is run.
COMPILER = r"""
import json, os, sys
d = sys.stdin.buffer.read()
n = d.index(b"\n")
pos, out = n + 1, []
for path, size in json.loads(d[:n]):
    src, pos = d[pos:pos + size], pos + size
    try:
        compile(src, path, "exec", dont_inherit=True)
    except Exception as e:
        out.append({"path": path, "line": getattr(e, "lineno", None),
                    "error": ("%s: %s" % (type(e).__name__, getattr(e, "msg", None) or e))[:300]})
sys.stdout.write(json.dumps({"version": sys.version.split()[0], "uid": os.getuid(), "broken": out}))
"""


def bot_python(a):
    """The interpreter that runs the bot: the one named (ExecStart's, or
    the deploy's --python), else what the launcher picks in the code root:
    its venv's, else the system's."""
    if a["python"]:
        return a["python"]
    venv = os.path.join(a["launcher"], "venv/bin/python")
    return venv if os.path.lexists(venv) else SYSTEM_PYTHON


def as_owner(owner):
    """subprocess's arguments that run a child as `owner` (user:group) with
    the user's groups; none when this is not root or the owner is root."""
    user, _, group = (owner or "").partition(":")
    if os.geteuid() != 0 or not user or user == "root":
        return {}
    try:
        pw = pwd.getpwnam(user)
        gid = grp.getgrnam(group).gr_gid if group else pw.pw_gid
    except KeyError:
        raise Fatal("the unit's user or group (%s) does not exist on the host: "
                    "the bot could not run; create it (jarvisctl setup) and deploy again" % owner)
    return {"user": pw.pw_uid, "group": gid, "extra_groups": os.getgrouplist(user, gid),
            "start_new_session": True}


# Interpreters compiling at once, each a share of the files: a first
# deploy compiles the whole tree, seconds of CPU each 1,000 files.
COMPILE_JOBS = 4


def run_compiler(python, sources, owner):
    """Compiles sources ([(path, bytes)]) with python as owner, in up to
    COMPILE_JOBS interpreters at once (one per CPU): their report."""
    jobs = max(1, min(os.cpu_count() or 1, COMPILE_JOBS, len(sources) // 100))
    if jobs == 1:
        return compile_share(python, sources, owner)
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(jobs) as pool:
        shares = list(pool.map(lambda k: compile_share(python, sources[k::jobs], owner), range(jobs)))
    report = dict(shares[0])
    report["broken"] = sorted((b for r in shares for b in r.get("broken", [])), key=lambda b: b["path"])
    return report


def compile_share(python, sources, owner):
    """One interpreter's compile of sources: its report."""
    import subprocess
    head = json.dumps([[p, len(b)] for p, b in sources]).encode() + b"\n"
    try:
        r = subprocess.run(
            [python, "-I", "-S", "-B", "-W", "ignore", "-c", COMPILER],
            input=head + b"".join(b for _, b in sources), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, cwd="/", env={"PATH": "/usr/local/bin:/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
            timeout=COMPILE_TIMEOUT, **as_owner(owner))
    except subprocess.TimeoutExpired:
        raise Fatal("%s did not finish compiling %d file(s) in %d s" % (python, len(sources), COMPILE_TIMEOUT))
    try:
        return json.loads(r.stdout.decode("utf-8", "replace").strip().splitlines()[-1])
    except (ValueError, IndexError):
        last = (r.stderr.decode("utf-8", "replace").strip().splitlines() or ["no output"])[-1]
        raise Fatal("%s could not check the code's syntax (exit %s): %s" % (python, r.returncode, last[:300]))


# What names a module in a source, read as text, so that any Python's
# syntax (and a file that does not compile) is read: `import a.b as c, d`,
# `from a.b import (c, d)`, `from . import c`, importlib.import_module("a.b"),
# __import__("a"), a path `x/y.py` or `-m a.b` in a string (a child
# interpreter). A comment or a string that reads like one counts too: in
# doubt, a file is run.
_FROM = re.compile(rb"\bfrom\s+(\.*[\w.]*)\s+import\s*(\([^)]*\)|[^\n;#]*(?:\\\n[^\n;#]*)*)")
_IMPORT = re.compile(rb"\bimport\s+([^\n;#]*(?:\\\n[^\n;#]*)*)")
_DYNAMIC = re.compile(rb"""(?:import_module|__import__)\s*\(\s*[rbuRBU]?["']([\w.]+)["']""")
_SCRIPT = re.compile(rb"([\w-]+)\.py\b")
_MODULE = re.compile(rb"""-m["']?[\s,]+["']?([\w.]+)""")


def imported_names(src):
    """Every module name component that src names as imported."""
    names = set()

    def add(dotted):
        names.update(w for w in re.split(rb"[^\w]+", dotted) if w)

    for m in _FROM.finditer(src):
        add(m.group(1))
        for part in m.group(2).split(b","):
            add(part.split(b" as ")[0])
    for m in _IMPORT.finditer(src):
        for part in m.group(1).split(b","):
            add(part.strip().split(b" as ")[0])
    for rx in (_DYNAMIC, _SCRIPT, _MODULE):
        for m in rx.finditer(src):
            add(m.group(1))
    return {n.decode("utf-8", "replace") for n in names}


def module_name(rel):
    """The last component of the module a file is: its stem, or for a
    package's __init__.py or __main__.py, the package's."""
    parts = rel[:-3].split("/") if rel.endswith(".py") else rel.split("/")
    if parts[-1] in ("__init__", "__main__") and len(parts) > 1:
        return parts[-2]
    return parts[-1]


def python_files(store):
    """Every .py file of the store (root's: what the deploy sent), relative."""
    for d, dirs, files in os.walk(store):
        dirs.sort()
        for f in sorted(files):
            if f.endswith(".py"):
                yield os.path.relpath(os.path.join(d, f), store)


def judge(store, broken, entry_script, entry_module):
    """Each broken file, run or not run: run when it is the unit's entry
    point, or when any .py file of the tree (the store's) names its module
    as imported, matched on the module's last name component."""
    who = {}
    if entry_module:
        for n in entry_module.split("."):
            who.setdefault(n, "the unit's ExecStart= (-m %s)" % entry_module)
    wanted = {module_name(b["path"]) for b in broken}
    paths = {b["path"] for b in broken}
    for rel in python_files(store):
        try:
            with open(os.path.join(store, rel), "rb") as f:
                src = f.read(SCAN_FILE_MAX)
        except OSError:
            continue
        for n in imported_names(src) & wanted:
            # A broken file that names itself (its usage line) runs nothing.
            if not (rel in paths and module_name(rel) == n):
                who.setdefault(n, rel)
    for b in broken:
        name = module_name(b["path"])
        if entry_script and b["path"] == entry_script:
            b["run"], b["why"] = True, "it is the unit's entry point (ExecStart=)"
        elif name in who:
            b["run"], b["why"] = True, "%s imports `%s`" % (who[name], name)
        else:
            b["run"], b["why"] = False, "nothing in the tree imports it and it is not the unit's entry point"
    return broken


def compile_check(store, files, a):
    """The `compile` command: the files (relative to the store) compiled by
    the bot's interpreter; a broken one judged run or not run."""
    sources = []
    for rel in files:
        check_rel(rel)
        with open(os.path.join(store, rel), "rb") as f:
            sources.append((rel, f.read()))
    python, note = bot_python(a), None
    try:
        report = run_compiler(python, sources, a["owner"])
    except OSError as e:
        if python == SYSTEM_PYTHON:
            raise Fatal("cannot run %s to check the code's syntax: %s" % (python, e.strerror))
        note = "cannot run %s (%s): checked with %s" % (python, e.strerror, SYSTEM_PYTHON)
        python = SYSTEM_PYTHON
        report = run_compiler(python, sources, a["owner"])
    broken = report.get("broken", [])
    if broken:
        judge(store, broken, a["entry_script"], a["entry_module"])
    return {"python": python, "version": report.get("version"), "checked": len(sources),
            "broken": broken, "note": note}


def parse_args(argv):
    a = {"take_over": set(), "src": [], "id": "manual", "lenient": False,
         "env_new": None, "env_backup": None, "env_restore": None,
         "pause_after": None, "pause_staging": None, "owner": None, "store": None,
         "hashes": None, "keep_hashes": False,
         "python": None, "launcher": None, "entry_script": None, "entry_module": None}
    pos = []
    i = 0
    while i < len(argv):
        w = argv[i]
        if w == "--lenient":
            a["lenient"] = True
        elif w == "--keep-hashes":
            a["keep_hashes"] = True
        elif w in ("--take-over", "--src", "--id", "--env-new", "--env-backup",
                   "--env-restore", "--pause-after", "--pause-staging", "--owner", "--store",
                   "--hashes", "--python", "--launcher", "--entry-script", "--entry-module"):
            i += 1
            v = argv[i]
            if w == "--take-over":
                check_rel(v)
                a["take_over"].add(v)
            elif w == "--src":
                a["src"].append(v)
            elif w in ("--pause-after", "--pause-staging"):
                a[w[2:].replace("-", "_")] = int(v)
            else:
                a[w[2:].replace("-", "_")] = v
        else:
            pos.append(w)
        i += 1
    return pos, a


def spaces(a, old, new, code):
    """The plan's space report: the code root's, and with --store the
    deploy history's, which gets the files whose content the deploy in
    effect does not hold (the rest is hard-linked from its store)."""
    out = {"code": code}
    if a["store"]:
        fresh = [e for r, e in new.items() if e.kind == "f"
                 and not (r in old and old[r].kind == "f" and old[r].sha == e.sha)]
        out["store"] = room_at(a["store"], fresh, 1)
    return out


def load_hashes(path, root):
    """The kept digests of the files under root (none when the file is
    missing or unreadable: they are only a shortcut)."""
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            kept = json.load(f)
        got = kept.get(root, {}) if isinstance(kept, dict) else {}
        return {r: v for r, v in got.items()
                if isinstance(v, list) and len(v) == 6 and all(isinstance(x, int) for x in v[:5])}
    except (OSError, ValueError):
        return {}


def save_hashes(path, root, hashes, known):
    """Keeps the digests of the paths the manifests know, under root: a
    private file, replaced whole."""
    if not path:
        return
    try:
        with open(path, encoding="utf-8") as f:
            kept = json.load(f)
        if not isinstance(kept, dict):
            kept = {}
    except (OSError, ValueError):
        kept = {}
    kept[root] = {r: v for r, v in hashes.items() if r in known}
    tmp = path + ".tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            # dumps, not dump: only the one-shot encoder is json's C one.
            f.write(json.dumps(kept, separators=(",", ":")))
        os.rename(tmp, path)
    except OSError:
        pass


def main(argv):
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    os.umask(0o077)
    cmd, rest = argv[0], argv[1:]
    pos, a = parse_args(rest)
    if cmd == "prepare":
        send = prepare(pos[0], DATA, pos[1] if len(pos) > 1 else None)
        return {"send": send}, 0
    if cmd == "verify":
        bad = verify(pos[0], load(pos[1]), *(pos[2:4] if len(pos) >= 4 else ()))
        return {"bad": bad[:50], "n_bad": len(bad)}, (1 if bad else 0)
    if cmd == "compile":
        files = [f for f in DATA.decode("utf-8").split("\n") if f]
        return compile_check(pos[0], files, a), 0
    if cmd == "clean":
        # A manifest the deploy never wrote (cut before its before.tsv) lists nothing.
        old, new = [load(m) if m == "-" or os.path.exists(m) else {} for m in pos[1:3]]
        return {"removed": clean(pos[0], old, new)}, 0
    if cmd in ("plan", "apply"):
        root, old, new = pos[0], load(pos[1]), load(pos[2])
        a["root"], a["from"] = root, pos[1]
        owner = a["owner"] or next((e.owner for e in new.values()), None)
        create = ids_of(owner) if (cmd == "apply" and owner) else None
        fd = open_root(root, create)
        if fd is None:
            # No code root yet: everything is new, nothing is in the way.
            p = {"put": sorted(r for r, e in new.items() if e.kind == "f"),
                 "mkdir": sorted(r for r, e in new.items() if e.kind == "d"),
                 "conflicts": [], "unshipped": 0}
            p["space"] = spaces(a, old, new, room_at(root, [new[r] for r in p["put"]], len(p["mkdir"])))
            return p, 0
        tree = Tree(fd, load_hashes(a["hashes"], root))
        try:
            if cmd == "plan":
                p, _ = plan(tree, old, new, a["take_over"])
                p["unshipped"], complete = count_unshipped(fd, set(old) | set(new))
                p["unshipped_at_least"] = not complete
                writes = p["put"] + p["replace"] + p["taken_over"]
                p["space"] = spaces(a, old, new, room(fd, root, [new[r] for r in writes], len(p["mkdir"])))
                return p, (3 if p["conflicts"] else 0)
            a["env_ids"] = ids_of(owner) if owner else None
            hold_swap_lock()
            result, code = apply(tree, old, new, a)
            if code == 0 and owner:
                env_step(tree, a, ids_of(owner))
            return result, code
        finally:
            # An apply keeps them always; a plan when asked (a dry run's does not).
            if cmd == "apply" or a["keep_hashes"]:
                save_hashes(a["hashes"], root, tree.hashes, set(old) | set(new))
            tree.close()
    raise Fatal("unknown command %s" % cmd)


def hold_swap_lock():
    """Takes SWAP_LOCK until this process exits (a kill or a power cut frees
    it). A host without /run to write (a test as a plain user) goes without."""
    import fcntl
    try:
        fd = os.open(SWAP_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    fcntl.flock(fd, fcntl.LOCK_EX)
    globals()["_swap_lock_fd"] = fd


if __name__ == "__main__":
    try:
        out, code = main(sys.argv[1:])
    except Fatal as e:
        out, code = dict(e.extra, error=str(e)), 2
    except OSError as e:
        out, code = {"error": "%s: %s" % (e.filename or "", e.strerror)}, 2
    try:
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()
    except OSError:
        pass
    sys.exit(code)
