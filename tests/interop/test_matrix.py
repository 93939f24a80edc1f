"""docs/interop.md is kept true by the tests: every test a matrix cell names
exists (in the module of its column), every interop test is named on the page,
and the versions table matches the installed peers (MQTT.js exactly, as the
lock file pins it; Debian packages by major.minor).
"""
import importlib
import inspect
import os
import re
import unittest

from interoplib import (DOC, HERE, InteropCase, feature, mosquitto_clients_version,
                        mosquitto_version, mqttjs_version, openssl_version, paho_version,
                        tshark_version)

NAME = re.compile(r"`(Test\w+)\.(test_\w+)`")

# versions table row -> (installed version, exact?)
VERSIONS = {
    "mosquitto_pub / mosquitto_sub": (mosquitto_clients_version, False),
    "mosquitto (broker)": (mosquitto_version, False),
    "paho-mqtt": (paho_version, False),
    "MQTT.js": (mqttjs_version, True),
    "openssl s_client": (openssl_version, False),
    "tshark": (tshark_version, False),
}


def doc_text():
    with open(DOC, encoding="utf-8") as f:
        return f.read()


def interop_tests():
    """{module name: {class name: [test method names]}} for every InteropCase in
    tests/interop/test_*.py."""
    out = {}
    for fn in sorted(os.listdir(HERE)):
        if not (fn.startswith("test_") and fn.endswith(".py")):
            continue
        mod = importlib.import_module(fn[:-3])
        classes = {}
        for name, cls in inspect.getmembers(mod, inspect.isclass):
            if issubclass(cls, InteropCase) and cls.__module__ == mod.__name__:
                tests = unittest.TestLoader().getTestCaseNames(cls)
                if tests:
                    classes[name] = list(tests)
        out[mod.__name__] = classes
    return out


def table(text, first_cell):
    """Rows (lists of cells) of the markdown table whose header starts with first_cell."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("| %s |" % first_cell):
            rows = []
            for row in lines[i:]:
                if not row.startswith("|"):
                    break
                rows.append([c.strip() for c in row.strip().strip("|").split("|")])
            return rows[0], rows[2:]  # header, body (after the --- line)
    raise AssertionError("docs/interop.md has no table starting with %r" % first_cell)


class TestMatrix(InteropCase):

    @classmethod
    def peer(cls):
        return "docs/interop.md (every peer above)"

    @feature("matrix cells")
    def test_cells_name_existing_tests(self):
        """Each test a matrix cell names exists in its column's module; every
        other `Class.test_method` on the page exists somewhere."""
        tests = interop_tests()
        header, body = table(doc_text(), "feature")
        modules = []
        for col in header[1:]:
            m = re.search(r"`(test_\w+)\.py`", col)
            self.assertTrue(m, "matrix column without a `test_*.py` module: %r" % col)
            self.assertIn(m.group(1), tests, "matrix column names a missing module")
            modules.append(m.group(1))
        cited = 0
        for row in body:
            self.assertEqual(len(row), len(header), "row with a wrong cell count: %r" % row)
            for mod, cell in zip(modules, row[1:]):
                names = NAME.findall(cell)
                self.assertTrue(names or cell == "—", "cell %r in row %r names no test"
                                % (cell, row[0]))
                self.assertTrue(not names or cell.startswith("✔"), "cell %r lacks ✔" % cell)
                for cls, meth in names:
                    cited += 1
                    self.assertIn(meth, tests[mod].get(cls, []),
                                  "row %r names %s.%s, which %s.py does not have"
                                  % (row[0], cls, meth, mod))
        self.assertGreater(cited, 0)
        everywhere = {(c, m) for classes in tests.values() for c, ms in classes.items()
                      for m in ms}
        for cls, meth in NAME.findall(doc_text()):
            self.assertIn((cls, meth), everywhere, "docs/interop.md names %s.%s, which no "
                          "interop test module has" % (cls, meth))

    @feature("matrix completeness")
    def test_every_interop_test_is_in_the_matrix(self):
        """Every test method of every interop test class is named on the page (class
        names are unique across the modules, so `Class.test_method` is enough)."""
        tests = interop_tests()
        seen = {}
        for mod, classes in tests.items():
            for cls in classes:
                self.assertNotIn(cls, seen, "class %s in both %s and %s" % (cls, seen.get(cls),
                                                                             mod))
                seen[cls] = mod
        named = set(NAME.findall(doc_text()))
        missing = ["%s.%s.%s" % (mod, cls, m) for mod, classes in tests.items()
                   for cls, ms in classes.items() for m in ms if (cls, m) not in named]
        self.assertEqual(missing, [], "tests not named in docs/interop.md")

    @feature("versions table")
    def test_versions_match_installed(self):
        """The versions table lists what is installed (MQTT.js exactly; Debian
        packages by major.minor)."""
        header, body = table(doc_text(), "peer")
        listed = {row[0]: row[1] for row in body}
        self.assertEqual(sorted(listed), sorted(VERSIONS), "peers in the versions table")
        for peer, (installed_fn, exact) in VERSIONS.items():
            installed = installed_fn()
            doc = listed[peer]
            if exact:
                self.assertEqual(doc, installed, "%s: docs/interop.md says %s, installed %s"
                                 % (peer, doc, installed))
            else:
                self.assertEqual(doc.split(".")[:2], installed.split(".")[:2],
                                 "%s: docs/interop.md says %s, installed %s (update the "
                                 "versions table)" % (peer, doc, installed))
