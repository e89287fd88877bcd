"""The venv builder's parts that read the installer's output and choose
which environments go and which one a switch may point at."""
import os
import shutil
import tempfile
import unittest

import helpers_path  # noqa: F401
import venv_build as b


class InstallerOutput(unittest.TestCase):
    def test_the_last_error_line_is_the_reason(self):
        out = ("Collecting foo\nERROR: Could not find a version that satisfies the requirement foo\n"
               "ERROR: No matching distribution found for foo\n\n[notice] A new release of pip\n")
        self.assertEqual(b.last_error(out), "ERROR: No matching distribution found for foo")
        self.assertEqual(b.last_error("error: Failed to prepare distributions\n  Caused by: x\n"),
                         "error: Failed to prepare distributions")
        self.assertEqual(b.last_error("first\n  last  \n\n"), "last")
        self.assertEqual(b.last_error(" \n"), "(no output)")

    def test_the_requirement_that_failed_is_named(self):
        cases = [
            ("ERROR: No matching distribution found for numpy==99", "numpy"),
            ("ERROR: Could not find a version that satisfies the requirement ta-lib (from versions: none)",
             "ta-lib"),
            ("ERROR: Failed to build pycares\n", "pycares"),
            ("  x No solution found when resolving dependencies:\n  Because nosuch was not found in the package registry",
             "nosuch"),
            ("Because nosuch==1.0 was not found", "nosuch"),
            ("ERROR: something else", None),
        ]
        for out, name in cases:
            with self.subTest(out=out):
                self.assertEqual(b.failed_name(out), name)

    def test_requirements_pip_ignored_for_their_markers(self):
        out = ("Ignoring winonly: markers 'sys_platform == \"win32\"' don't match your environment\n"
               "Collecting pip\nIgnoring old: markers 'python_version < \"3.0\"' don't match your environment\n")
        self.assertEqual(b.pip_skipped(out), [
            {"name": "winonly", "marker": 'sys_platform == "win32"'},
            {"name": "old", "marker": 'python_version < "3.0"'},
        ])
        self.assertEqual(b.pip_skipped("Successfully installed pip\n"), [])


class Pruning(unittest.TestCase):
    BUILDS = ["20260101T000000-1", "20260102T000000-2", "20260103T000000-3",
              "20260104T000000-4", "20260105T000000-5"]

    def test_the_newest_builds_stay(self):
        names = self.BUILDS + ["adopted-20250101T000000", "previous", "previous.switch-9"]
        self.assertEqual(b.prunable(names, {"venvs/20260105T000000-5"}),
                         ["venvs/20260101T000000-1", "venvs/20260102T000000-2"])

    def test_the_live_and_previous_environments_never_go(self):
        live = {"venvs/20260105T000000-5", "venvs/20260101T000000-1"}
        self.assertEqual(b.prunable(self.BUILDS, live), ["venvs/20260102T000000-2"])

    def test_keep_or_fewer_builds_all_stay(self):
        self.assertEqual(b.prunable(self.BUILDS[:b.KEEP] + ["adopted-x"], set()), [])


class SwitchTarget(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.root)
        here = os.getcwd()
        os.chdir(self.root)
        self.addCleanup(os.chdir, here)
        for d in ["venvs/20260101T000000-1", "venvs/adopted-x", "venvs/empty", "elsewhere"]:
            os.makedirs(d + "/bin")
        for d in ["venvs/20260101T000000-1", "venvs/adopted-x", "elsewhere"]:
            open(d + "/bin/python", "w").close()
        os.symlink("20260101T000000-1", "venvs/previous")
        os.symlink("../elsewhere", "venvs/link")

    def test_only_an_environment_built_here(self):
        self.assertTrue(b.is_build("venvs/20260101T000000-1"))
        self.assertTrue(b.is_build("venvs/adopted-x/"))
        for t in ["venvs/empty", "venvs/previous", "venvs/link", "elsewhere", "venvs/../elsewhere",
                  "venvs", "venvs/20260101T000000-1/bin", "/usr"]:
            with self.subTest(target=t):
                self.assertFalse(b.is_build(t))


if __name__ == "__main__":
    unittest.main()
