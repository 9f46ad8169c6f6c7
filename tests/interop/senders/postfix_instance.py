"""A private Postfix instance on the host: its own configuration, queue and
log file in a temporary folder, its own smtpd on a loopback port from the
caller, no chroot. Used as the sending MTA (smtpd to inject, the smtp client
to send through starttlsd) and as a real backend (mail put on hold and read
back with postcat). Needs root: the master runs as root, the rest as postfix.
"""

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

integration = sys.modules["integration_conftest"]  # loaded by tests/interop/conftest.py

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
POSTCAT = shutil.which("postcat") or "/usr/sbin/postcat"
MASTER_CF = Path("/etc/postfix/master.cf")


def postfix_cmd(conf_dir, *args):
    # Postfix commands log to the terminal only when they have one.
    return subprocess.run(["script", "-qc", " ".join([POSTFIX, "-c", str(conf_dir)] + list(args)), "/dev/null"],
                          capture_output=True, text=True, timeout=60)


class Postfix:
    def __init__(self, name, smtpd_port, main_lines):
        """main_lines: main.cf lines on top of the instance's own."""
        self.base = Path(tempfile.mkdtemp(prefix="starttlsd-%s-" % name))
        self.base.chmod(0o755)  # the postfix user must reach it, unlike pytest's folders
        self.etc, self.spool, data = self.base / "etc", self.base / "spool", self.base / "data"
        for d in (self.etc, self.spool, data):
            d.mkdir()
        shutil.chown(data, "postfix")
        self.maillog = self.base / "maillog"
        self.smtpd = "127.0.0.1:%d" % smtpd_port
        (self.etc / "main.cf").write_text("\n".join([
            "compatibility_level = 3.6",
            "queue_directory = %s" % self.spool,
            "data_directory = %s" % data,
            "meta_directory = /etc/postfix",
            "mail_owner = postfix",
            "setgid_group = postdrop",
            "inet_interfaces = 127.0.0.1",
            "inet_protocols = ipv4",
            "maillog_file_prefixes = %s" % self.base,
            "maillog_file = %s" % self.maillog,
            "alias_maps =",
            "alias_database =",
            "biff = no",
        ] + list(main_lines)) + "\n")
        services = [line for line in MASTER_CF.read_text().splitlines()
                    if line and not line[0].isspace() and not line.startswith("#")
                    and not re.match(r"smtp\s+inet\s", line)]
        services = [re.sub(r"^(\S+\s+\S+\s+\S+\s+\S+\s+)y", r"\1n", line) for line in services]
        if not any(line.startswith("postlog") for line in services):
            services.append("postlog unix-dgram n - n - 1 postlogd")
        (self.etc / "master.cf").write_text(
            "\n".join(["%s inet n - n - - smtpd" % self.smtpd] + services) + "\n")
        out = postfix_cmd(self.etc, "start")
        if "fatal" in out.stdout or not integration.wait_until((data / "master.lock").exists):
            self.stop()
            raise AssertionError("postfix %s did not start:\n%s" % (name, out.stdout))

    def stop(self):
        postfix_cmd(self.etc, "stop")

    def remove(self):
        shutil.rmtree(self.base, ignore_errors=True)

    def log(self):
        return self.maillog.read_text(errors="replace") if self.maillog.exists() else ""

    def wait_log(self, pattern, timeout=integration.TIMEOUT):
        """The log once PATTERN is in it (postlogd writes a little later), else None."""
        found = integration.wait_until(lambda: re.search(pattern, self.log(), re.M), timeout)
        return self.log() if found else None

    def held(self):
        """The queue files Postfix holds (smtpd_recipient_restrictions HOLD)."""
        hold = self.spool / "hold"
        return integration.wait_until(lambda: sorted(hold.glob("*")) if hold.exists() else [])

    def postcat(self, queue_file, part):
        """part: -h headers, -b body (as Postfix holds them, LF line ends)."""
        out = subprocess.run([POSTCAT, "-c", str(self.etc), part, str(queue_file)], capture_output=True,
                             timeout=30)
        assert out.returncode == 0, out.stderr
        return out.stdout
