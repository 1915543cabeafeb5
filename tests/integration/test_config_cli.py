"""`cairn config check` and `cairn config show` run as a user would: exact stdout, stderr
and exit codes (docs/configuration.md, "Checking a configuration")."""

import json
import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cairn import main, run_cli  # noqa: E402

NOT_LOOPBACK = ("api.listen is not a loopback address: set api.token to require a bearer "
                "token")


class ConfigCli(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="cairn-config-cli-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def assertUsage(self, args, message):
        rc, out, err = run_cli(args)
        self.assertEqual(rc, 2, err)
        self.assertEqual(out, "")
        self.assertTrue(err.startswith("cairn: %s\nusage: cairn config check FILE" % message), err)

    # ---- check ----

    def test_check_ok(self):
        path = self.write("ok.yaml", "workers: 2\nhttp:\n  max_body_bytes: 1m\n")
        self.assertEqual(run_cli(["config", "check", path]), (0, "%s: ok\n" % path, ""))

    def test_check_empty_file_is_all_defaults(self):
        path = self.write("empty.yaml", "")
        self.assertEqual(run_cli(["config", "check", path]), (0, "%s: ok\n" % path, ""))

    def test_check_errors_name_file_line_column(self):
        cases = [
            ("workers: 4\nhttp:\n    max_bdy_bytes: 1m\n",
             "3:5: unknown setting 'http.max_bdy_bytes'"),
            ("workers: 1\nhttp:\n    max_headers: 10\n    max_body_bytes: 12q\n",
             "4:21: http.max_body_bytes: '12q' is not a size (use a number with optional k, m, "
             "g)"),
            ("http:\n  max_headers: 0\n", "2:16: http.max_headers: 0 is below the minimum 1"),
            ("workers: 4\n  bad: x\n", "2:6: mapping values are not allowed in this context"),
            ("workers: 1\nworkers: 2\n", "2:1: duplicate key 'workers' (first at 1:1)"),
        ]
        for text, want in cases:
            path = self.write("bad.yaml", text)
            self.assertEqual(run_cli(["config", "check", path]),
                             (3, "", "%s:%s\n" % (path, want)))

    def test_check_missing_file(self):
        path = os.path.join(self.dir, "nope.yaml")
        self.assertEqual(run_cli(["config", "check", path]),
                         (3, "", "%s: cannot open: No such file or directory\n" % path))

    def test_check_json(self):
        path = self.write("ok.yaml", "workers: 2\n")
        rc, out, err = run_cli(["config", "check", "--json", path])
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(out, '{"ok":true,"file":%s}\n' % json.dumps(path))

        bad = self.write("bad.yaml", "log:\n  level: loud\n")
        rc, out, err = run_cli(["config", "check", bad, "--json"])
        self.assertEqual((rc, err), (3, ""))
        message = "log.level: 'loud' is not a log level (use debug, info, warn or error)"
        self.assertEqual(json.loads(out), {
            "ok": False, "error": "%s:2:10: %s" % (bad, message), "file": bad, "line": 2,
            "column": 10, "message": message})

        missing = os.path.join(self.dir, "nope.yaml")
        rc, out, err = run_cli(["config", "check", missing, "--json"])
        self.assertEqual((rc, err), (3, ""))
        self.assertEqual(json.loads(out), {
            "ok": False, "error": "%s: cannot open: No such file or directory" % missing,
            "file": missing, "line": None, "column": None,
            "message": "cannot open: No such file or directory"})

    def test_check_applies_environment_then_validates(self):
        path = self.write("ok.yaml", "workers: 2\n")
        self.assertEqual(run_cli(["config", "check", path], env={"CAIRN_WORKERS": "x"}),
                         (3, "", "CAIRN_WORKERS: 'x' is not a number\n"))
        self.assertEqual(run_cli(["config", "check", path], env={"CAIRN_WORKRS": "4"}),
                         (3, "", "CAIRN_WORKRS: unknown setting\n"))
        # Not settings: ignored.
        self.assertEqual(run_cli(["config", "check", path],
                                 env={"CAIRN_BENCH_SECONDS": "5", "CAIRN_TEST_X": "1"}),
                         (0, "%s: ok\n" % path, ""))
        # An exposed API without a token: each setting is valid, together they are not.
        self.assertEqual(run_cli(["config", "check", path],
                                 env={"CAIRN_API_LISTEN": "0.0.0.0:9000"}),
                         (3, "", "%s: %s\n" % (path, NOT_LOOPBACK)))
        rc, out, _ = run_cli(["config", "check", path, "--json"],
                             env={"CAIRN_API_LISTEN": "0.0.0.0:9000"})
        self.assertEqual(rc, 3)
        self.assertEqual(json.loads(out), {
            "ok": False, "error": "%s: %s" % (path, NOT_LOOPBACK), "file": path, "line": None,
            "column": None, "message": NOT_LOOPBACK})
        self.assertEqual(run_cli(["config", "check", path],
                                 env={"CAIRN_API_LISTEN": "0.0.0.0:9000",
                                      "CAIRN_API_TOKEN": "0123abcd"}),
                         (0, "%s: ok\n" % path, ""))

    # ---- show ----

    def test_show_defaults_and_round_trip(self):
        rc, out, err = run_cli(["config", "show"])
        self.assertEqual((rc, err), (0, ""))
        lines = [line.split("  #")[0].rstrip() for line in out.splitlines()]
        for want in ["workers: 0", "log:", "  level: info", 'data_dir: "./cairn-data"', "api:",
                     '  listen: "127.0.0.1:9000"', '  token: ""', "  test_routes: false",
                     "http:", "  max_url_bytes: 8KiB", "  max_header_bytes: 32KiB",
                     "  max_headers: 100", "  max_body_bytes: 8MiB", "  header_timeout: 10s",
                     "  body_timeout: 30s", "  idle_timeout: 1m", "  send_timeout: 30s",
                     "  max_connections: 10000", "shutdown:", "  drain_timeout: 10s"]:
            self.assertIn(want, lines)
        # What show prints is a configuration file.
        path = self.write("shown.yaml", out)
        self.assertEqual(run_cli(["config", "check", path]), (0, "%s: ok\n" % path, ""))

    def test_show_file_environment_and_redacted_token(self):
        path = self.write("c.yaml", "http.max_body_bytes: 1536\napi:\n  token: s3cr3t-t0ken\n")
        rc, out, err = run_cli(["config", "show", path], env={"CAIRN_HTTP_IDLE_TIMEOUT": "90s"})
        self.assertEqual((rc, err), (0, ""))
        self.assertIn("\n  max_body_bytes: 1536 ", out)
        self.assertIn("\n  idle_timeout: 90s ", out)
        self.assertIn('\n  token: "<redacted>" ', out)
        self.assertNotIn("s3cr3t", out)
        # The redacted value does not load: a copied dump fails loudly.
        copy = self.write("copy.yaml", out)
        rc, _, err = run_cli(["config", "check", copy])
        self.assertEqual(rc, 3)
        self.assertIn(": api.token: has a character a bearer token cannot hold", err)

    def test_show_reads_cairn_config_without_file(self):
        path = self.write("c.yaml", "workers: 7\n")
        rc, out, err = run_cli(["config", "show"], env={"CAIRN_CONFIG": path})
        self.assertEqual((rc, err), (0, ""))
        self.assertTrue(out.split("\n")[1].startswith("workers: 7 "), out)

    def test_show_invalid(self):
        bad = self.write("bad.yaml", "workers: nine\n")
        self.assertEqual(run_cli(["config", "show", bad]),
                         (3, "", "%s:1:10: workers: 'nine' is not a number\n" % bad))
        # Loads but does not validate: printed, then the reason it would not run.
        exposed = self.write("exposed.yaml", "api.listen: 0.0.0.0:80\n")
        rc, out, err = run_cli(["config", "show", exposed])
        self.assertEqual((rc, err), (3, "%s: %s\n" % (exposed, NOT_LOOPBACK)))
        self.assertIn('\n  listen: "0.0.0.0:80" ', out)

    # ---- usage ----

    def test_usage_errors(self):
        self.assertUsage(["config"], "missing subcommand (check or show)")
        self.assertUsage(["config", "frob"], "unknown subcommand 'frob'")
        self.assertUsage(["config", "check"], "config check needs a FILE")
        self.assertUsage(["config", "check", "a.yaml", "b.yaml"],
                         "too many arguments for config check")
        self.assertUsage(["config", "check", "--bogus", "a.yaml"],
                         "unknown flag '--bogus' for config check")
        self.assertUsage(["config", "show", "--json"], "unknown flag '--json' for config show")

    def test_help(self):
        rc, out, err = run_cli(["config", "--help"])
        self.assertEqual((rc, err), (0, ""))
        self.assertTrue(out.startswith("usage: cairn config check FILE [--json]\n"), out)

    def test_up_refuses_an_invalid_file_with_the_same_line(self):
        bad = self.write("bad.yaml", "http:\n  max_headers: 0\n")
        rc, out, err = run_cli(["up", "-c", bad])
        self.assertEqual((rc, out), (3, ""))
        self.assertEqual(err, "cairn: %s:2:16: http.max_headers: 0 is below the minimum 1\n" % bad)


if __name__ == "__main__":
    main()
