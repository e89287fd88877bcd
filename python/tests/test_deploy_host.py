"""The deploy's host worker, its parts that decide without changing the
host: manifest paths and lines, the bounded hash, the plan of a swap on a
temporary tree, and the capped count of unshipped files."""
import hashlib
import os
import pwd
import shutil
import sys
import tempfile
import unittest
from unittest import mock

import helpers_path  # noqa: F401
import deploy_host as h

OWNER = pwd.getpwuid(os.getuid()).pw_name


def sha(b):
    return hashlib.sha256(b).hexdigest()


class ManifestPaths(unittest.TestCase):
    def test_a_path_that_leaves_the_root_is_refused(self):
        for p in ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", "a/", "a\nb", "a\tb", "a\0b"]:
            with self.subTest(path=p), self.assertRaises(h.Fatal):
                h.check_rel(p)

    def test_a_relative_path_is_accepted(self):
        for p in ["a", "bots/supervisor.py", ".env.example", "a b/..c"]:
            h.check_rel(p)


class Manifest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir)

    def write(self, text):
        p = os.path.join(self.dir, "manifest")
        with open(p, "w") as f:
            f.write(text)
        return p

    def test_lines_become_entries(self):
        p = self.write("# jarvis manifest\nd\t0750\tjarvis:jarvis\t0\t-\tbots\n"
                       "f\t0640\tjarvis:jarvis\t12\t%s\tbots/supervisor.py\n" % ("a" * 64))
        m = h.load(p)
        self.assertEqual(sorted(m), ["bots", "bots/supervisor.py"])
        f = m["bots/supervisor.py"]
        self.assertEqual((f.kind, f.mode, f.owner, f.size, f.sha), ("f", 0o640, "jarvis:jarvis", 12, "a" * 64))
        self.assertEqual(f.line(), "f\t0640\tjarvis:jarvis\t12\t%s\tbots/supervisor.py" % ("a" * 64))

    def test_no_manifest_and_the_one_sent_on_stdin(self):
        self.assertEqual(h.load("-"), {})
        with mock.patch.object(h, "DATA", b"f\t0600\tu:g\t3\tabc\tx\n"):
            self.assertEqual(h.load("@data")["x"].size, 3)

    def test_a_bad_line_names_the_file_and_line(self):
        for text in ["f\t0640\tu:g\t1\tabc\n", "x\t0640\tu:g\t1\tabc\tp\n", "f\t0640\tu:g\t1\tabc\tp\textra\n"]:
            p = self.write("# ok\n" + text)
            with self.subTest(line=text), self.assertRaisesRegex(h.Fatal, "^%s:2: not a manifest line$" % p):
                h.load(p)

    def test_a_bad_path_in_a_line_is_refused(self):
        p = self.write("f\t0640\tu:g\t1\tabc\t../../etc/shadow\n")
        with self.assertRaisesRegex(h.Fatal, "bad path"):
            h.load(p)


class BoundedHash(unittest.TestCase):
    def setUp(self):
        fd, self.path = tempfile.mkstemp()
        os.write(fd, b"x" * 100)
        os.close(fd)
        self.addCleanup(os.unlink, self.path)
        self.fd = os.open(self.path, os.O_RDONLY)
        self.addCleanup(os.close, self.fd)

    def test_the_expected_size_gives_the_digest(self):
        self.assertEqual(h.sha256_of(self.fd, 100), sha(b"x" * 100))

    def test_more_than_the_expected_size_is_no_digest_and_is_not_read_on(self):
        self.assertIsNone(h.sha256_of(self.fd, 10))
        # At most size + 1 bytes read: a file that grows holds the lock no longer.
        self.assertEqual(os.lseek(self.fd, 0, os.SEEK_CUR), 11)

    def test_without_a_size_hash_max_bounds_it(self):
        with mock.patch.object(h, "HASH_MAX", 99):
            self.assertIsNone(h.sha256_of(self.fd))
        os.lseek(self.fd, 0, os.SEEK_SET)
        with mock.patch.object(h, "HASH_MAX", 100):
            self.assertEqual(h.sha256_of(self.fd), sha(b"x" * 100))

    def test_the_copy_is_what_was_hashed(self):
        fd, copy = tempfile.mkstemp()
        self.addCleanup(os.unlink, copy)
        try:
            self.assertEqual(h.sha256_of(self.fd, 100, fd), sha(b"x" * 100))
        finally:
            os.close(fd)
        with open(copy, "rb") as f:
            self.assertEqual(f.read(), b"x" * 100)


class Plan(unittest.TestCase):
    maxDiff = None
    """old: the manifest in effect; new: the one deployed; the live tree
    holds what the host has now."""

    def setUp(self):
        self.root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.root)

    def put(self, rel, data, mode=0o640):
        p = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
        os.chmod(p, mode)

    def entry(self, rel, data=None, mode=0o640):
        if data is None:
            return h.Entry("d", 0o750, OWNER, 0, "-", rel)
        return h.Entry("f", mode, OWNER, len(data), sha(data), rel)

    def plan(self, old, new, take_over=()):
        tree = h.Tree(os.open(self.root, h.DIR_FLAGS))
        try:
            p, seen = h.plan(tree, {e.path: e for e in old}, {e.path: e for e in new}, set(take_over))
        finally:
            tree.close()
        return {k: v for k, v in p.items() if v}, seen

    def test_every_case_of_a_swap(self):
        self.put("same.py", b"same")
        self.put("replace.py", b"v1")
        self.put("adopted.py", b"new here")
        self.put("delete.py", b"gone")
        self.put("kept.py", b"edited on the host")
        self.put("changed.py", b"edited on the host")
        self.put("theirs.json", b"the bot's state")
        self.put("taken.py", b"operator's")
        self.put("fix.py", b"mode", 0o666)
        os.makedirs(os.path.join(self.root, "olddir"))
        os.symlink("/etc", os.path.join(self.root, "link.py"))
        self.put("file", b"")
        old = [self.entry("same.py", b"same"), self.entry("replace.py", b"v1"),
               self.entry("delete.py", b"gone"), self.entry("kept.py", b"shipped"),
               self.entry("changed.py", b"shipped"), self.entry("fix.py", b"mode"),
               self.entry("olddir")]
        new = [self.entry("same.py", b"same"), self.entry("replace.py", b"v2"),
               self.entry("adopted.py", b"new here"), self.entry("put.py", b"p"),
               self.entry("changed.py", b"v2"), self.entry("theirs.json", b"{}"),
               self.entry("taken.py", b"ours"), self.entry("fix.py", b"mode"),
               self.entry("link.py", b"x"), self.entry("newdir"), self.entry("file")]
        p, seen = self.plan(old, new, take_over=["taken.py"])
        self.assertEqual(p, {
            "same": ["fix.py", "same.py"],
            "fix": ["fix.py"],
            "replace": ["replace.py"],
            "adopted": ["adopted.py"],
            "put": ["put.py"],
            "mkdir": ["newdir"],
            "taken_over": ["taken.py"],
            "conflicts": [
                {"path": "changed.py", "why": "shipped by the deploy in effect, but changed on the host since"},
                {"path": "file", "why": "a file is there, where the code ships a directory"},
                {"path": "link.py",
                 "why": "a symbolic link or special file is there, where the code ships a file"},
                {"path": "theirs.json",
                 "why": "a file that no deploy shipped is there (the bot's state, or the operator's)"},
            ],
            "delete": ["delete.py"],
            "kept_changed": ["kept.py"],
            "rmdir": ["olddir"],
        })
        # What the swap may move is held to what the plan looked at.
        self.assertIn("delete.py", seen)
        self.assertNotIn("kept.py", seen)

    def test_a_path_under_a_link_is_blocked_not_followed(self):
        outside = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, outside)
        with open(os.path.join(outside, "x.py"), "wb") as f:
            f.write(b"x")
        os.symlink(outside, os.path.join(self.root, "bots"))
        p, _ = self.plan([], [self.entry("bots/x.py", b"x")])
        self.assertEqual(p["conflicts"], [{"path": "bots/x.py",
                                           "why": "a parent of it is a file or a symbolic link, not a directory"}])

    def test_a_file_of_another_size_is_not_read(self):
        self.put("big.py", b"y" * 50)
        with mock.patch.object(h, "sha256_of", side_effect=AssertionError("read")):
            p, _ = self.plan([self.entry("big.py", b"old")], [self.entry("big.py", b"new")])
        self.assertEqual(p["conflicts"][0]["path"], "big.py")


class KeptDigests(unittest.TestCase):
    """The digests kept across runs: a file unchanged since is not read
    again; any change to it, even with its mtime set back, is read."""

    def setUp(self):
        self.root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.root)
        self.hashes = os.path.join(tempfile.mkdtemp(), "hashes.json")
        self.addCleanup(shutil.rmtree, os.path.dirname(self.hashes))
        self.path = os.path.join(self.root, "a.py")
        with open(self.path, "wb") as f:
            f.write(b"v1")

    def digest(self):
        tree = h.Tree(os.open(self.root, h.DIR_FLAGS), h.load_hashes(self.hashes, self.root))
        try:
            return tree.digest("a.py", 2)
        finally:
            h.save_hashes(self.hashes, self.root, tree.hashes, {"a.py"})
            tree.close()

    def test_an_unchanged_file_is_read_once(self):
        with mock.patch.object(h, "RACY_NS", 0):
            self.assertEqual(self.digest(), sha(b"v1"))
            with mock.patch.object(h, "sha256_of", side_effect=AssertionError("read again")):
                self.assertEqual(self.digest(), sha(b"v1"))
        self.assertEqual(os.stat(self.hashes).st_mode & 0o777, 0o600)

    def test_a_change_with_its_mtime_set_back_is_read(self):
        with mock.patch.object(h, "RACY_NS", 0):
            self.digest()
            st = os.stat(self.path)
            with open(self.path, "r+b") as f:
                f.write(b"v2")
            os.utime(self.path, ns=(st.st_atime_ns, st.st_mtime_ns))
            self.assertEqual(self.digest(), sha(b"v2"))

    def test_a_file_changed_just_now_is_not_kept(self):
        self.digest()
        self.assertEqual(h.load_hashes(self.hashes, self.root), {})

    def test_a_broken_or_foreign_record_is_no_digest(self):
        for text in ["not json", "[]", '{"%s": {"a.py": [1, 2, "x"]}}' % self.root]:
            with open(self.hashes, "w") as f:
                f.write(text)
            self.assertEqual(h.load_hashes(self.hashes, self.root), {}, text)


class VerifyLinked(unittest.TestCase):
    """A store file that is the inode of the deploy in effect's store (rsync
    --link-dest) is not read again; a file sent anew is."""

    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir)
        for d in ("old", "new"):
            os.makedirs(os.path.join(self.dir, d))
        self.put("old/same.py", b"same")
        os.link(os.path.join(self.dir, "old/same.py"), os.path.join(self.dir, "new/same.py"))
        self.put("old/changed.py", b"v1")
        self.put("new/changed.py", b"v2")
        self.old = self.manifest("old.tsv", {"same.py": b"same", "changed.py": b"v1"})
        self.new = self.manifest("new.tsv", {"same.py": b"same", "changed.py": b"v2"})

    def put(self, rel, data):
        with open(os.path.join(self.dir, rel), "wb") as f:
            f.write(data)

    def manifest(self, name, files):
        p = os.path.join(self.dir, name)
        with open(p, "w") as f:
            for rel, data in sorted(files.items()):
                f.write("f\t0640\t%s:%s\t%d\t%s\t%s\n" % (OWNER, OWNER, len(data), sha(data), rel))
        return p

    def verify(self):
        return h.verify(os.path.join(self.dir, "new"), h.load(self.new),
                        os.path.join(self.dir, "old"), self.old)

    def test_only_what_was_sent_is_read(self):
        read = []
        real = h.sha256_of

        def counting(fd, size=None, copy_to=None):
            read.append(os.fstat(fd).st_ino)
            return real(fd, size, copy_to)
        with mock.patch.object(h, "sha256_of", counting):
            self.assertEqual(self.verify(), [])
        self.assertEqual(read, [os.stat(os.path.join(self.dir, "new/changed.py")).st_ino])

    def test_a_sent_file_that_differs_is_named(self):
        self.put("new/changed.py", b"v3")
        self.assertEqual(self.verify(), ["changed.py"])

    def test_a_file_of_the_same_content_but_another_inode_is_read(self):
        os.unlink(os.path.join(self.dir, "new/same.py"))
        self.put("new/same.py", b"SAME")
        self.assertEqual(self.verify(), ["same.py"])


class PrepareStore(unittest.TestCase):
    """A new store: the files the store in effect holds with the same
    content are its very inodes; only the rest is left to send."""

    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir)
        self.old = os.path.join(self.dir, "old")
        self.new = os.path.join(self.dir, "new")
        os.makedirs(os.path.join(self.old, "code/bots"))
        os.makedirs(self.new)
        old = {"bots/same.py": b"same", "bots/changed.py": b"v1", "gone.py": b"x"}
        for rel, data in old.items():
            with open(os.path.join(self.old, "code", rel), "wb") as f:
                f.write(data)
        with open(os.path.join(self.old, "manifest.tsv"), "wb") as f:
            f.write(self.manifest(old, ["bots"]))
        self.text = self.manifest(
            {"bots/same.py": b"same", "bots/changed.py": b"v2", "core/new.py": b"n"}, ["bots", "core"])

    def manifest(self, files, dirs):
        lines = ["d\t0750\t%s:%s\t0\t-\t%s" % (OWNER, OWNER, d) for d in dirs]
        lines += ["f\t0640\t%s:%s\t%d\t%s\t%s" % (OWNER, OWNER, len(b), sha(b), rel)
                  for rel, b in sorted(files.items())]
        return ("\n".join(lines) + "\n").encode()

    def ino(self, store, rel):
        return os.stat(os.path.join(store, "code", rel)).st_ino

    def test_unchanged_files_are_linked_and_the_rest_is_sent(self):
        send = h.prepare(self.new, self.text, self.old)
        self.assertEqual(send, ["bots/changed.py", "core/new.py"])
        self.assertEqual(self.ino(self.new, "bots/same.py"), self.ino(self.old, "bots/same.py"))
        self.assertTrue(os.path.isdir(os.path.join(self.new, "code/core")))
        self.assertTrue(os.path.isdir(os.path.join(self.new, "private")))
        with open(os.path.join(self.new, "manifest.tsv"), "rb") as f:
            self.assertEqual(f.read(), self.text)
        # What it left to send is what verify then finds missing.
        self.assertEqual(h.verify(os.path.join(self.new, "code"), h.load(os.path.join(self.new, "manifest.tsv")),
                                  os.path.join(self.old, "code"), os.path.join(self.old, "manifest.tsv")), send)

    def test_without_a_store_in_effect_everything_is_sent(self):
        self.assertEqual(h.prepare(self.new, self.text, None),
                         ["bots/changed.py", "bots/same.py", "core/new.py"])

    def test_a_link_or_a_missing_file_in_the_old_store_is_sent_not_linked(self):
        same = os.path.join(self.old, "code/bots/same.py")
        os.unlink(same)
        os.symlink("/etc/passwd", same)
        self.assertEqual(h.prepare(self.new, self.text, self.old),
                         ["bots/changed.py", "bots/same.py", "core/new.py"])
        self.assertFalse(os.path.lexists(os.path.join(self.new, "code/bots/same.py")))
        os.unlink(same)
        shutil.rmtree(self.new)
        os.makedirs(self.new)
        self.assertEqual(h.prepare(self.new, self.text, self.old),
                         ["bots/changed.py", "bots/same.py", "core/new.py"])

    def test_a_bad_path_in_the_manifest_is_refused_before_anything_is_made(self):
        bad = self.text + b"f\t0640\tx:x\t1\t" + sha(b"x").encode() + b"\t../escape.py\n"
        with self.assertRaises(h.Fatal):
            h.prepare(self.new, bad, self.old)
        self.assertEqual(os.listdir(self.new), [])


class CountUnshipped(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.root)
        for rel in ["a.py", "data/1.json", "data/2.json", "logs/x/y.log", "bots/s.py"]:
            p = os.path.join(self.root, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            open(p, "w").close()
        outside = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, outside)
        for i in range(20):
            open(os.path.join(outside, str(i)), "w").close()
        os.symlink(outside, os.path.join(self.root, "link"))
        self.fd = os.open(self.root, h.DIR_FLAGS)
        self.addCleanup(os.close, self.fd)

    def test_files_no_manifest_lists_not_through_links(self):
        # The link is one entry; what it points at is not counted.
        self.assertEqual(h.count_unshipped(self.fd, {"a.py", "bots/s.py"}), (4, True))

    def test_the_count_stops_at_scan_max_and_says_so(self):
        with mock.patch.object(h, "SCAN_MAX", 3):
            n, complete = h.count_unshipped(self.fd, set())
        self.assertFalse(complete)
        self.assertLessEqual(n, 3)
        with mock.patch.object(h, "SCAN_MAX", 10):
            self.assertEqual(h.count_unshipped(self.fd, set()), (6, True))

    def test_no_descriptor_is_left_open(self):
        before = len(os.listdir("/proc/self/fd"))
        with mock.patch.object(h, "SCAN_MAX", 3):
            h.count_unshipped(self.fd, set())
        h.count_unshipped(self.fd, set())
        self.assertEqual(len(os.listdir("/proc/self/fd")), before)


class Arguments(unittest.TestCase):
    def test_options_and_positionals(self):
        pos, a = h.parse_args(["/code", "--take-over", "a.py", "old", "--src", "s1", "--src", "s2",
                               "--pause-after", "3", "--env-new", "/e", "--lenient", "new"])
        self.assertEqual(pos, ["/code", "old", "new"])
        self.assertEqual((a["take_over"], a["src"], a["pause_after"], a["env_new"], a["lenient"]),
                         ({"a.py"}, ["s1", "s2"], 3, "/e", True))

    def test_a_take_over_path_is_checked_like_a_manifest_path(self):
        with self.assertRaises(h.Fatal):
            h.parse_args(["--take-over", "../etc/passwd"])


class StaleTemps(unittest.TestCase):
    """What a swap cut off earlier left: only the worker's own names beside
    manifest paths go, never a file of someone else's."""

    def setUp(self):
        self.root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.root)

    def put(self, rel, data=b"x"):
        p = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)

    def test_only_the_exact_temp_names_of_manifest_paths_go(self):
        self.put("bots/.a.py.jarvis-deploy-tmp")           # beside a shipped file: stale
        self.put("..env.jarvis-deploy-tmp")                # the .env's: stale
        self.put("bots/.other.py.jarvis-deploy-tmp")       # beside no manifest path: kept
        self.put("bots/a.py.jarvis-deploy-tmp")            # not the worker's name: kept
        self.put("outside/target", b"not yours")
        os.makedirs(os.path.join(self.root, "core/.b.py.jarvis-deploy-tmp"))   # a directory: kept
        os.symlink(os.path.join(self.root, "outside/target"),
                   os.path.join(self.root, "bots/.c.py.jarvis-deploy-tmp"))   # a link: kept, its target too
        tree = h.Tree(os.open(self.root, h.DIR_FLAGS))
        try:
            n = h.remove_stale_temps(tree, {"bots/a.py", "core/b.py", "bots/c.py", ".env", "gone/d.py"})
        finally:
            tree.close()
        self.assertEqual(n, 2)
        left = sorted(os.path.relpath(os.path.join(d, f), self.root)
                      for d, ds, fs in os.walk(self.root) for f in fs + ds)
        self.assertEqual(left, ["bots", "bots/.c.py.jarvis-deploy-tmp", "bots/.other.py.jarvis-deploy-tmp",
                                "bots/a.py.jarvis-deploy-tmp", "core", "core/.b.py.jarvis-deploy-tmp",
                                "outside", "outside/target"])
        with open(os.path.join(self.root, "outside/target"), "rb") as f:
            self.assertEqual(f.read(), b"not yours")


class Room(unittest.TestCase):
    def room(self, free, entries, inodes=1000):
        fd = os.open("/", h.DIR_FLAGS)
        self.addCleanup(os.close, fd)
        r = h.room(fd, "/", entries)
        r.update(free=free, free_inodes=inodes)
        return r

    def test_the_writes_and_the_margin_must_fit(self):
        e = h.Entry("f", 0o640, OWNER, 5000, "x", "a")
        r = self.room(0, [e])
        bs = os.statvfs("/").f_frsize
        self.assertEqual(r["needed"], -(-5000 // bs) * bs, "whole blocks")
        self.assertEqual(r["margin"], h.MARGIN)
        self.assertTrue(h.short(r))
        self.assertFalse(h.short(self.room(r["needed"] + h.MARGIN, [e])))
        self.assertTrue(h.short(self.room(r["needed"] + h.MARGIN - 1, [e])))
        self.assertTrue(h.short(self.room(1 << 40, [e], inodes=0)), "no inode left")

    def test_a_swap_that_writes_nothing_fits_on_a_full_disk(self):
        r = self.room(0, [], inodes=0)
        self.assertEqual((r["needed"], r["margin"], r["needed_inodes"]), (0, 0, 0))
        self.assertFalse(h.short(r))


if __name__ == "__main__":
    unittest.main()


class CompileCheck(unittest.TestCase):
    """The `compile` command on a store: the changed files compiled in
    memory by the bot's interpreter; a broken one judged run when the
    unit starts it or a file of the tree imports it."""

    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir)

    def tree(self, files):
        for rel, text in files.items():
            p = os.path.join(self.dir, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "w") as f:
                f.write(text)

    def check(self, files, **kw):
        a = {"python": sys.executable, "launcher": None, "owner": OWNER,
             "entry_script": None, "entry_module": None}
        a.update(kw)
        return h.compile_check(self.dir, files, a)

    def test_a_broken_module_that_is_imported_is_run_an_unimported_one_is_not(self):
        self.tree({
            "bots/supervisor.py": "import core.engine\nfrom bots import (\n    helper,\n)\n",
            "bots/helper.py": "def f(:\n",
            "core/__init__.py": "",
            "core/engine.py": "x = 1\n",
            "core/trade.py": "from .engine import x\nfrom . import broken_pkg\n",
            "core/broken_pkg/__init__.py": "class\n",
            "examples/broken_demo.py": "# run me: python examples/broken_demo.py\nprint 'hi'\n",
        })
        r = self.check(["bots/helper.py", "core/engine.py", "core/broken_pkg/__init__.py",
                        "examples/broken_demo.py"])
        self.assertEqual(r["checked"], 4)
        self.assertEqual(r["version"], sys.version.split()[0])
        by = {b["path"]: b for b in r["broken"]}
        self.assertEqual(sorted(by), ["bots/helper.py", "core/broken_pkg/__init__.py",
                                      "examples/broken_demo.py"])
        self.assertTrue(by["bots/helper.py"]["run"])
        self.assertIn("bots/supervisor.py imports `helper`", by["bots/helper.py"]["why"])
        self.assertTrue(by["core/broken_pkg/__init__.py"]["run"])
        self.assertIn("core/trade.py", by["core/broken_pkg/__init__.py"]["why"])
        demo = by["examples/broken_demo.py"]
        self.assertFalse(demo["run"], demo)
        self.assertIn("nothing in the tree imports it", demo["why"])
        self.assertEqual(demo["line"], 2)
        self.assertIn("SyntaxError", demo["error"])

    def test_the_entry_point_is_run_by_path_or_by_module(self):
        self.tree({"bots/supervisor.py": "def (\n", "bots/other.py": "def (\n"})
        r = self.check(["bots/supervisor.py"], entry_script="bots/supervisor.py")
        self.assertTrue(r["broken"][0]["run"])
        self.assertIn("entry point", r["broken"][0]["why"])
        r = self.check(["bots/other.py"], entry_module="bots.other")
        self.assertTrue(r["broken"][0]["run"], r)

    def test_dynamic_imports_and_child_interpreters_count_as_run(self):
        self.tree({
            "main.py": "importlib.import_module('plugins.alpha')\n"
                       "subprocess.run([sys.executable, 'tools/beta.py'])\n"
                       "subprocess.run(['python3', '-m', 'tools.gamma'])\n",
            "plugins/alpha.py": "(\n", "tools/beta.py": "(\n", "tools/gamma.py": "(\n",
        })
        r = self.check(["plugins/alpha.py", "tools/beta.py", "tools/gamma.py"])
        self.assertEqual([b["run"] for b in r["broken"]], [True, True, True], r)

    def test_no_byte_code_is_written_and_a_good_tree_has_nothing_broken(self):
        self.tree({"a.py": "import b\n", "b.py": "x = f'{1}'\n"})
        r = self.check(["a.py", "b.py"])
        self.assertEqual(r["broken"], [])
        found = [f for _, dirs, fs in os.walk(self.dir) for f in dirs + fs]
        self.assertEqual(sorted(found), ["a.py", "b.py"])

    def test_the_launcher_picks_the_code_roots_venv_else_the_system_python(self):
        root = os.path.join(self.dir, "root")
        os.makedirs(root)
        a = {"python": None, "launcher": root}
        self.assertEqual(h.bot_python(a), "/usr/bin/python3")
        os.makedirs(os.path.join(root, "venv/bin"))
        os.symlink(sys.executable, os.path.join(root, "venv/bin/python"))
        self.assertEqual(h.bot_python(a), os.path.join(root, "venv/bin/python"))
        self.assertEqual(h.bot_python({"python": "/opt/py/bin/python3", "launcher": root}),
                         "/opt/py/bin/python3")

    def test_an_interpreter_that_cannot_run_falls_back_to_the_systems(self):
        self.tree({"a.py": "x = 1\n"})
        with mock.patch.object(h, "SYSTEM_PYTHON", sys.executable):
            r = self.check(["a.py"], python="/nonexistent/venv/bin/python")
        self.assertEqual(r["python"], sys.executable)
        self.assertIn("cannot run /nonexistent/venv/bin/python", r["note"])

    @unittest.skipUnless(os.geteuid() == 0 and os.path.exists(h.SYSTEM_PYTHON),
                         "dropping to the service user needs root and a python3 it can run")
    def test_root_compiles_as_the_service_user(self):
        nobody = pwd.getpwnam("nobody")
        r = h.run_compiler(h.SYSTEM_PYTHON, [("a.py", b"x = (\n")], "nobody:")
        self.assertEqual(r["uid"], nobody.pw_uid)
        self.assertEqual([b["path"] for b in r["broken"]], ["a.py"])

    def test_many_files_are_compiled_in_shares_and_every_broken_one_is_named(self):
        sources = [("m%03d.py" % i, b"x = %d\n" % i) for i in range(400)]
        sources[7] = ("m007.py", b"def (\n")
        sources[350] = ("m350.py", b"x = = 1\n")
        calls = []
        real = h.compile_share

        def share(python, part, owner):
            calls.append(len(part))
            return real(python, part, owner)
        with mock.patch.object(h.os, "cpu_count", return_value=4), \
                mock.patch.object(h, "compile_share", share):
            r = h.run_compiler(sys.executable, sources, None)
        self.assertEqual(calls, [100, 100, 100, 100])
        self.assertEqual([b["path"] for b in r["broken"]], ["m007.py", "m350.py"])
        self.assertTrue(r["version"])

    def test_an_unknown_service_user_is_named(self):
        with mock.patch.object(h.os, "geteuid", return_value=0), self.assertRaises(h.Fatal) as e:
            h.as_owner("no-such-user-jarvis-e2e:")
        self.assertIn("no-such-user-jarvis-e2e", str(e.exception))

    def test_a_path_that_leaves_the_store_is_refused(self):
        with self.assertRaises(h.Fatal):
            self.check(["../etc/passwd"])
