"""The requirements reader's own PEP 508 subset, used where the interpreter
has no packaging (the system's python3 on Debian), and the reading of
requirement files around it."""
import unittest
from unittest import mock

import helpers_path  # noqa: F401
import requirements as r


class Versions(unittest.TestCase):
    def test_specifiers_compare_release_numbers_not_strings(self):
        cases = [
            ("1.0", "==", "1", True),
            ("1.10", ">", "1.9", True),
            ("2.0", ">=", "1.9", True),
            ("1.9", ">=", "1.10", False),
            ("1.0", "!=", "1.0.0", False),
            ("1.0rc1", "<", "1.0", True),
            ("1.0a1", "<", "1.0b1", True),
            ("23.1.4", "==", "23.*", True),
            ("24.0", "==", "23.*", False),
            ("24.0", "!=", "23.*", True),
            ("23.2", "~=", "23.0", True),
            ("24.0", "~=", "23.0", False),
            ("1.4.9", "~=", "1.4.2", True),
            ("1.5.0", "~=", "1.4.2", False),
            ("1.4.1", "~=", "1.4.2", False),
            ("1.0", "===", "1.0", True),
            ("1.0.0", "===", "1.0", False),
        ]
        for have, op, want, expected in cases:
            with self.subTest(have=have, op=op, want=want):
                self.assertIs(r.spec_ok(have, op, want), expected)


ENV = dict(r.ENV, os_name="posix", sys_platform="linux", platform_system="Linux",
           python_version="3.9", python_full_version="3.9.18")


@mock.patch.dict(r.ENV, ENV)
class Markers(unittest.TestCase):
    def test_markers_evaluate_against_this_interpreter(self):
        cases = [
            ('python_version >= "3.8" and (os_name == "posix" or os_name == "nt")', True),
            ('sys_platform == "win32"', False),
            ("sys_platform == 'darwin'", False),
            ('platform_system != "Windows"', True),
            # A version, not a string: "3.9" < "3.10" as numbers.
            ('python_version < "3.10"', True),
            ('python_full_version >= "3.9.2"', True),
            ('"linux" in sys_platform', True),
            ('"win" not in sys_platform', True),
            ('os_name == "nt" or os_name == "posix" and sys_platform == "win32"', False),
            ('(os_name == "nt" or os_name == "posix") and sys_platform == "linux"', True),
            ('extra == "socks"', False),
        ]
        for text, expected in cases:
            with self.subTest(marker=text):
                self.assertIs(r.marker_ok(text), expected)

    def test_a_marker_it_cannot_read_is_an_error_not_a_guess(self):
        for text in ['os_name ==', 'no_such_variable == "x"', '(os_name == "posix"',
                     'os_name == "posix")', 'os_name == "posix" and', 'os_name = "posix"']:
            with self.subTest(marker=text), self.assertRaises(ValueError):
                r.marker_ok(text)


class PlainRequirement(unittest.TestCase):
    def test_name_extras_specifiers_and_marker(self):
        p = r.Plain('requests[socks] >=2.0, <3 ; platform_system != "Windows"')
        self.assertEqual(p.name, "requests")
        self.assertEqual(p.specifier, ">=2.0,<3")
        self.assertEqual(p.marker, 'platform_system != "Windows"')
        self.assertTrue(p.satisfied_by("2.31.0"))
        self.assertFalse(p.satisfied_by("3.0"))
        self.assertFalse(p.satisfied_by("1.9"))

    def test_parenthesized_specifiers_and_a_url_requirement(self):
        self.assertEqual(r.Plain("pkg (>=1,<2)").specifier, ">=1,<2")
        url = r.Plain("pkg @ https://example.org/pkg-1.0.tar.gz")
        self.assertEqual((url.name, url.specifier, url.marker), ("pkg", "", None))
        self.assertTrue(url.satisfied_by("0.1"))

    def test_a_broken_line_is_refused(self):
        for line in ["not a requirement ==", "pkg ==", "-pkg", "pkg >> 1"]:
            with self.subTest(line=line), self.assertRaises(ValueError):
                r.Plain(line)


@mock.patch.object(r, "Requirement", None)
@mock.patch.dict(r.ENV, ENV)
class Reading(unittest.TestCase):
    def kinds(self, text, installed):
        return [(x["line"], x.get("name"), x["kind"]) for x in r.read(text, installed)]

    def test_each_line_gets_its_kind(self):
        text = ("# comment\n"
                "-r other.txt\n"
                "\n"
                "pip>=20  # inline comment\n"
                "My_Pkg==1.*\n"
                "absent\n"
                "winonly==1.0 ; sys_platform == \"win32\"\n"
                "not a requirement ==\n"
                "wrapped>=1.0 \\\n"
                " ; os_name == \"posix\"\n"
                "url#frag==1\n")
        installed = {"pip": "23.0.1", "my-pkg": "2.0", "wrapped": "1.2", "url-frag": "1"}
        self.assertEqual(self.kinds(text, installed), [
            (2, None, "option"),
            (4, "pip", "ok"),
            (5, "My_Pkg", "mismatch"),
            (6, "absent", "missing"),
            (7, "winonly", "skipped"),
            (8, None, "invalid"),
            (9, "wrapped", "ok"),
            (11, None, "invalid"),
        ])

    def test_results_name_versions_and_markers_never_the_line(self):
        out = r.read('pkg>=1 ; os_name == "nt"\nother==2 --hash=sha256:secret\n', {"pkg": "1"})
        self.assertEqual(out[0], {"line": 1, "name": "pkg", "spec": ">=1", "kind": "skipped",
                                  "marker": 'os_name == "nt"'})
        self.assertEqual(out[1], {"line": 2, "kind": "invalid"})
        self.assertNotIn("secret", repr(out))


if __name__ == "__main__":
    unittest.main()
