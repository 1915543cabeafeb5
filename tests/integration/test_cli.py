"""Integration tests of the `cairn` command line: exit codes, usage, and the exact error lines
of `cairn config check` (docs/cli.md, docs/configuration.md).

Run: CAIRN_BIN=build/cairn python3 tests/integration/test_cli.py
"""

import json
import os
import re
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cairn import CairnTestCase, get, main, run_cli  # noqa: E402

TOP_USAGE = "usage: cairn COMMAND [ARGS]\n"
UP_USAGE = "usage: cairn up [-c FILE]"


class Commands(unittest.TestCase):

    def test_version(self):
        rc, out, err = run_cli(["version"])
        self.assertEqual((rc, err), (0, ""))
        self.assertRegex(out, r"\Acairn \d+\.\d+\.\d+ \(git \S+; libuv [\d.]+, llhttp [\d.]+, "
                              r"jansson [\d.]+\)\n\Z")

    def test_version_json(self):
        rc, out, err = run_cli(["version", "--json"])
        self.assertEqual((rc, err), (0, ""))
        self.assertTrue(out.endswith("\n") and out.count("\n") == 1, out)
        j = json.loads(out)
        self.assertEqual(set(j), {"version", "git", "libuv", "llhttp", "jansson"})
        _, plain, _ = run_cli(["version"])
        self.assertEqual(plain.split()[1], j["version"])

    def test_dash_dash_version(self):
        self.assertEqual(run_cli(["--version"]), run_cli(["version"]))

    def test_help(self):
        rc, out, err = run_cli(["help"])
        self.assertEqual((rc, err), (0, ""))
        self.assertTrue(out.startswith(TOP_USAGE), out)
        for cmd in ("up", "version", "config", "help"):
            self.assertRegex(out, r"(?m)^  %s +\S" % cmd)
        self.assertEqual(run_cli(["--help"]), (rc, out, err))
        self.assertEqual(run_cli(["-h"]), (rc, out, err))

    def test_help_up(self):
        rc, out, err = run_cli(["help", "up"])
        self.assertEqual((rc, err), (0, ""))
        self.assertTrue(out.startswith(UP_USAGE), out)
        for flag in ("-c, --config FILE", "--workers N", "--api-listen", "--log-level",
                     "--set KEY=VALUE"):
            self.assertIn(flag, out)
        # `cairn up --help` prints the same and starts nothing.
        self.assertEqual(run_cli(["up", "--help"]), (0, out, ""))

    def test_help_config_and_version(self):
        rc, out, _ = run_cli(["help", "config"])
        self.assertEqual(rc, 0)
        self.assertTrue(out.startswith("usage: cairn config check FILE [--json]\n"), out)
        self.assertEqual(run_cli(["help", "version"]), (0, "usage: cairn version [--json]\n", ""))

    def usage_error(self, args, first_line, usage_start, env=None):
        rc, out, err = run_cli(args, env=env)
        self.assertEqual(rc, 2, err)
        self.assertEqual(out, "")
        lines = err.splitlines()
        self.assertEqual(lines[0], first_line)
        self.assertTrue(lines[1].startswith(usage_start), err)

    def test_no_command(self):
        self.usage_error([], "cairn: no command given", TOP_USAGE.strip())

    def test_unknown_command(self):
        self.usage_error(["bogus"], "cairn: unknown command 'bogus'", TOP_USAGE.strip())

    def test_unknown_top_level_flag(self):
        self.usage_error(["--bogus"], "cairn: unknown flag '--bogus'", TOP_USAGE.strip())

    def test_help_unknown_command(self):
        self.usage_error(["help", "bogus"], "cairn: unknown command 'bogus'", TOP_USAGE.strip())

    def test_help_too_many_arguments(self):
        self.usage_error(["help", "up", "version"], "cairn: too many arguments",
                         "usage: cairn help")

    def test_version_unknown_flag(self):
        self.usage_error(["version", "--bogus"], "cairn: unknown flag '--bogus'",
                         "usage: cairn version")

    def test_config_unknown_subcommand(self):
        self.usage_error(["config", "bogus"], "cairn: unknown subcommand 'bogus'",
                         "usage: cairn config check")

    def test_config_check_without_file(self):
        self.usage_error(["config", "check"], "cairn: config check needs a FILE",
                         "usage: cairn config check")


class Up(unittest.TestCase):
    """`cairn up` refusing to start: it must exit (run_cli has a timeout), never serve."""

    def usage_error(self, args, first_line):
        rc, out, err = run_cli(["up"] + args)
        self.assertEqual(rc, 2, err)
        lines = err.splitlines()
        self.assertEqual(lines[0], first_line)
        self.assertTrue(lines[1].startswith(UP_USAGE), err)
        self.assertNotIn(" info up listening", err)

    def test_unknown_flag(self):
        self.usage_error(["--bogus"], "cairn: unknown flag '--bogus'")

    def test_unknown_flag_with_value(self):
        rc, _, err = run_cli(["up", "--bogus=1"])
        self.assertEqual(rc, 2)
        self.assertRegex(err.splitlines()[0], r"^cairn: unknown flag '--bogus(=1)?'$")

    def test_unexpected_argument(self):
        self.usage_error(["extra"], "cairn: unexpected argument 'extra'")

    def test_flag_missing_value(self):
        self.usage_error(["--workers"], "cairn: flag '--workers' needs a value")

    def test_set_without_equals(self):
        self.usage_error(["--set", "foo"], "cairn: --set needs KEY=VALUE, got 'foo'")

    def config_error(self, args, line, env=None):
        rc, out, err = run_cli(["up"] + args, env=env)
        self.assertEqual((rc, out), (3, ""), err)
        self.assertEqual(err, line + "\n")

    def test_set_unknown_setting(self):
        self.config_error(["--set", "http.bogus=1"], "cairn: unknown setting 'http.bogus'")

    def test_set_value_below_minimum(self):
        self.config_error(["--set", "http.max_headers=0"],
                          "cairn: http.max_headers: 0 is below the minimum 1")

    def test_listen_port_out_of_range(self):
        rc, _, err = run_cli(["up", "--api-listen", "127.0.0.1:99999"])
        self.assertIn(rc, (2, 3))
        self.assertIn("api.listen", err)
        self.assertIn("99999", err)

    def test_listen_not_loopback_without_token(self):
        self.config_error(["--api-listen", "203.0.113.1:0"],
                          "cairn: api.listen is not a loopback address: set api.token to "
                          "require a bearer token")

    def test_listen_host_name_refused(self):
        rc, _, err = run_cli(["up", "--api-listen", "example.com:0"])
        self.assertEqual(rc, 3, err)
        self.assertIn("api.listen", err)

    def test_cannot_bind_is_exit_1(self):
        # Valid configuration (token set), but the address is not on this host.
        rc, out, err = run_cli(["up", "--api-listen", "203.0.113.1:0", "--set",
                                "api.token=abc"])
        self.assertEqual(rc, 1, err)
        self.assertRegex(err, r"(?m) error up \"cannot listen\" addr=203\.0\.113\.1:0 ")
        self.assertNotIn(" info up ready", err)

    def test_missing_config_file(self):
        self.config_error(["-c", "/nonexistent/cairn.yaml"],
                          "cairn: /nonexistent/cairn.yaml: cannot open: No such file or "
                          "directory")

    def test_unknown_cairn_variable(self):
        self.config_error([], "cairn: CAIRN_WORKRS: unknown setting", env={"CAIRN_WORKRS": "2"})

    def test_bad_cairn_variable_value(self):
        self.config_error([], "cairn: CAIRN_WORKERS: 'x' is not a number",
                          env={"CAIRN_WORKERS": "x"})


class ConfigCheck(unittest.TestCase):

    def setUp(self):
        d = tempfile.TemporaryDirectory(prefix="cairn-cli-")
        self.addCleanup(d.cleanup)
        self.dir = d.name

    def file(self, text, name="cairn.yaml"):
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(text.encode() if isinstance(text, str) else text)
        return path

    def ok(self, text):
        path = self.file(text)
        rc, out, err = run_cli(["config", "check", path])
        self.assertEqual((rc, out, err), (0, path + ": ok\n", ""))

    def bad(self, text, line, col, message, env=None):
        """The error must be exactly one line FILE:LINE:COL: message (FILE: message without
        a position), exit 3, nothing on stdout; --json must agree."""
        path = self.file(text)
        rc, out, err = run_cli(["config", "check", path], env=env)
        want = "%s:%d:%d: %s" % (path, line, col, message) if line else "%s: %s" % (path,
                                                                                     message)
        self.assertEqual((rc, out, err), (3, "", want + "\n"))
        rc, out, err = run_cli(["config", "check", path, "--json"], env=env)
        self.assertEqual((rc, err), (3, ""))
        self.assertEqual(json.loads(out), {"ok": False, "error": want, "file": path,
                                           "line": line, "column": col, "message": message})

    def test_ok(self):
        self.ok("workers: 2\nhttp:\n  max_body_bytes: 1m\n")

    def test_ok_every_setting(self):
        self.ok("workers: 4\nlog:\n  level: WARN\ndata_dir: /var/lib/cairn\napi:\n"
                "  listen: 0.0.0.0:9000\n  token: 3f1c9a0b7d2e4c6f8a1b3d5e7f9a0c2e\n"
                "  test_routes: yes\nhttp:\n  max_url_bytes: 8k\n  max_header_bytes: 32KiB\n"
                "  max_headers: 100\n  max_body_bytes: 16MiB\n  header_timeout: 10s\n"
                "  body_timeout: 30s\n  idle_timeout: 1m\n  send_timeout: 30000\n"
                "  max_connections: 20000\nshutdown:\n  drain_timeout: 15s\n")

    def test_ok_empty_and_comments(self):
        self.ok("")
        self.ok("# only a comment\n\n")

    def test_ok_dotted_and_nested_mixed(self):
        self.ok("http:\n  max_body_bytes: 1m\nhttp.idle_timeout: 5s\n")

    def test_ok_limits_inclusive(self):
        self.ok("http:\n  max_headers: 1\n")
        self.ok("http:\n  max_headers: 10000\n")

    def test_ok_json(self):
        path = self.file("workers: 1\n")
        rc, out, err = run_cli(["config", "check", path, "--json"])
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(json.loads(out), {"ok": True, "file": path})

    def test_unknown_setting(self):
        self.bad("http:\n  max_bdy_bytes: 1m\n", 2, 3, "unknown setting 'http.max_bdy_bytes'")

    def test_unknown_top_level_setting(self):
        self.bad("workers: 1\nwrkers: 2\n", 2, 1, "unknown setting 'wrkers'")

    def test_bad_size(self):
        self.bad("http:\n  max_body_bytes: 12q\n", 2, 19,
                 "http.max_body_bytes: '12q' is not a size (use a number with optional k, m, g)")

    def test_bad_duration(self):
        self.bad("http:\n  header_timeout: 1.5s\n", 2, 19, "http.header_timeout: '1.5s' is not "
                 "a duration (use a number with ms, s, m or h)")

    def test_below_minimum(self):
        self.bad("http:\n  max_headers: 0\n", 2, 16, "http.max_headers: 0 is below the minimum 1")

    def test_above_maximum(self):
        self.bad("http:\n  max_headers: 10001\n", 2, 16,
                 "http.max_headers: 10001 is above the maximum 10000")

    def test_duplicate_key(self):
        self.bad("workers: 1\nlog.level: info\nworkers: 2\n", 3, 1,
                 "duplicate key 'workers' (first at 1:1)")

    def test_duplicate_flat_and_nested(self):
        self.bad("http:\n  max_headers: 5\nhttp.max_headers: 6\n", 3, 1,
                 "duplicate key 'http.max_headers' (first at 2:3)")

    def test_duplicate_group(self):
        self.bad("http:\n  max_headers: 5\nhttp:\n  max_body_bytes: 1k\n", 3, 1,
                 "duplicate key 'http' (first at 1:1)")

    def test_no_value(self):
        self.bad("workers:\n", 1, 9, "workers: no value (remove the line to keep the default)")

    def test_null_value(self):
        self.bad("workers: ~\n", 1, 10, "workers: no value (remove the line to keep the default)")

    def test_yaml_syntax_error(self):
        self.bad("http:\n  a: b: c\n", 2, 7, "mapping values are not allowed in this context")

    def test_yaml_syntax_error_with_context(self):
        self.bad("http: [1, 2\n", 2, 1,
                 "did not find expected ',' or ']' (while parsing a flow sequence at 1:7)")

    def test_column_counts_characters(self):
        # Three 2-byte characters before the bad value: column 28, not byte 31.
        self.bad('{data_dir: "ééé", workers: x}\n', 1, 28, "workers: 'x' is not a number")

    def test_top_level_not_a_mapping(self):
        path = self.file("- a\n- b\n")
        rc, out, err = run_cli(["config", "check", path])
        self.assertEqual((rc, out), (3, ""))
        self.assertRegex(err, r"\A%s:1:1: .*mapping.*\n\Z" % re.escape(path))

    def test_validation_error_has_no_position(self):
        self.bad("api:\n  listen: 0.0.0.0:9000\n", None, None,
                 "api.listen is not a loopback address: set api.token to require a bearer token")

    def test_url_limit_larger_than_header_limit(self):
        path = self.file("http:\n  max_url_bytes: 64k\n  max_header_bytes: 32k\n")
        rc, out, err = run_cli(["config", "check", path])
        self.assertEqual((rc, out), (3, ""))
        self.assertRegex(err, r"\A%s: http\.max_url_bytes .*http\.max_header_bytes.*\n\Z"
                         % re.escape(path))

    def test_missing_file(self):
        path = os.path.join(self.dir, "absent.yaml")
        rc, out, err = run_cli(["config", "check", path])
        self.assertEqual((rc, out, err),
                         (3, "", "%s: cannot open: No such file or directory\n" % path))
        rc, out, _ = run_cli(["config", "check", path, "--json"])
        self.assertEqual(rc, 3)
        j = json.loads(out)
        self.assertEqual((j["ok"], j["line"], j["column"]), (False, None, None))

    def test_environment_error(self):
        path = self.file("workers: 1\n")
        rc, out, err = run_cli(["config", "check", path], env={"CAIRN_WORKERS": "x"})
        self.assertEqual((rc, out, err), (3, "", "CAIRN_WORKERS: 'x' is not a number\n"))

    def test_unknown_environment_variable(self):
        path = self.file("workers: 1\n")
        rc, out, err = run_cli(["config", "check", path], env={"CAIRN_WORKRS": "2"})
        self.assertEqual((rc, out, err), (3, "", "CAIRN_WORKRS: unknown setting\n"))

    def test_environment_applied_before_validation(self):
        # The file alone is valid; with the variable, validation fails.
        path = self.file("workers: 1\n")
        rc, _, err = run_cli(["config", "check", path],
                             env={"CAIRN_API_LISTEN": "0.0.0.0:9000"})
        self.assertEqual((rc, err), (3, "%s: api.listen is not a loopback address: set "
                                        "api.token to require a bearer token\n" % path))

    def test_unprintable_bytes_escaped(self):
        path = self.file(b"log:\n  level: \"a\\x01b\"\n")
        rc, _, err = run_cli(["config", "check", path])
        self.assertEqual(rc, 3)
        self.assertIn("\\x01", err)
        self.assertNotIn("\x01", err)
        self.assertEqual(err.count("\n"), 1)

    def test_show_round_trips(self):
        path = self.file("workers: 2\nhttp:\n  max_body_bytes: 1048576\n  idle_timeout: 120s\n")
        rc, shown, err = run_cli(["config", "show", path])
        self.assertEqual((rc, err), (0, ""))
        self.assertIn("max_body_bytes: 1MiB", shown)
        self.assertIn("idle_timeout: 2m", shown)
        again = self.file(shown, "shown.yaml")
        self.assertEqual(run_cli(["config", "check", again])[0], 0)
        self.assertEqual(run_cli(["config", "show", again]), (0, shown, ""))

    def test_show_redacts_token(self):
        path = self.file("api:\n  token: s3cr3t-token-value\n")
        rc, shown, _ = run_cli(["config", "show", path])
        self.assertEqual(rc, 0)
        self.assertNotIn("s3cr3t-token-value", shown)
        self.assertIn('"<redacted>"', shown)


class HelpTextMatchesServer(CairnTestCase):
    def test_up_serves_with_flags_from_help(self):
        # The flags `cairn help up` documents all work together.
        srv = self.start(args=["--log-level", "info", "--set", "http.max_headers=50"])
        self.assertEqual(get(srv.port, "/healthz").body, b"ok\n")


if __name__ == "__main__":
    main()
