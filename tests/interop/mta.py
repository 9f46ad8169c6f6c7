"""mta.py - run Debian's mail servers in containers for the interop matrix.

API (shared by tests/interop/backends and tests/interop/senders):

    image(name) -> str
        The image built from tests/interop/images/NAME.Containerfile, tagged
        localhost/starttlsd-interop-NAME:<first 12 hex of the file's SHA-256>,
        so it is built once and again only when the Containerfile changes.
        The base image is made first if missing (packaging/container/make-base).
    render(src_dir, dst_dir, substitutions) -> Path
        Copies a configuration folder (e.g. conf/backends/exim4), replacing
        each key of SUBSTITUTIONS by its value in every file, keeping modes.
    Container(name, conf_dir, command=("/interop/start",), network="host")
        .start() runs IMAGE(name) detached with CONF_DIR mounted read-only at
        /interop and COMMAND as its command (the start script of the
        configuration); network is "host" or a named network namespace
        ("ns:/run/netns/NAME").  Returns self; .id is the container ID.
        .wait_port(port, host="127.0.0.1") waits until the server accepts
        (connects from the host, or inside the namespace with netns_exec).
        .exec(*argv, input=None) -> CompletedProcess (check=False).
        .read(path) -> bytes   one file from inside the container.
        .files(folder) -> [paths]  regular files under FOLDER, sorted.
        .logs() -> str          the container's stdout and stderr.
        .stop()                 podman rm -f by ID (idempotent).
    wait_until(check, timeout) from tests/integration/conftest.py.

pytest fixtures (tests/interop/conftest.py): `container` (a factory
container(name, conf_dir, **kw) that stops every container it started and
prints its logs when the test failed), plus the integration suite's `cert`,
`start_proxy` and `proxy_for` (the real proxy, $STARTTLSD).

Podman needs the settings of /work/shared/CONTAINERS.md on some machines:
every call here uses tests/package/containers.conf through CONTAINERS_CONF
unless the caller set CONTAINERS_CONF, and builds with --network=host.
Run `python3 tests/interop/mta.py build [NAME...]` to build images ahead.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "tests" / "interop" / "images"
MAKE_BASE = REPO / "packaging" / "container" / "make-base"
BASE = "docker.io/library/debian:bookworm-slim"
ENV = dict(os.environ, CONTAINERS_CONF=os.environ.get(
    "CONTAINERS_CONF", str(REPO / "tests" / "package" / "containers.conf")))


def podman(*args, check=True, timeout=120, input=None):
    out = subprocess.run(["podman"] + [str(a) for a in args], env=ENV, capture_output=True,
                         timeout=timeout, input=input)
    if check and out.returncode != 0:
        raise RuntimeError("podman %s: %s" % (" ".join(map(str, args[:3])), out.stderr.decode(errors="replace")))
    return out


def image(name):
    """The image for NAME, built if missing or if its Containerfile changed."""
    containerfile = IMAGES / ("%s.Containerfile" % name)
    digest = hashlib.sha256(containerfile.read_bytes()).hexdigest()[:12]
    tag = "localhost/starttlsd-interop-%s:%s" % (name, digest)
    if podman("image", "exists", tag, check=False).returncode == 0:
        return tag
    if podman("image", "exists", BASE, check=False).returncode != 0:
        subprocess.run([str(MAKE_BASE)], env=ENV, check=True, timeout=900)
    podman("build", "--network=host", "-t", tag, "-f", containerfile, IMAGES, timeout=900)
    return tag


def render(src_dir, dst_dir, substitutions):
    """A copy of SRC_DIR with every key of SUBSTITUTIONS replaced in every file."""
    dst = Path(dst_dir)
    for src in sorted(Path(src_dir).rglob("*")):
        target = dst / src.relative_to(src_dir)
        if src.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        text = src.read_text()
        for key, value in substitutions.items():
            text = text.replace(key, str(value))
        target.write_text(text)
        shutil.copymode(src, target)
    return dst


def wait_until(check, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


class Container:
    count = 0

    def __init__(self, name, conf_dir, command=("/interop/start",), network="host", hostname="backend.test"):
        Container.count += 1
        self.name = name
        self.cname = "starttlsd-interop-%s-%d-%d" % (name, os.getpid(), Container.count)
        self.conf_dir = Path(conf_dir)
        self.command = list(command)
        self.network = network
        self.hostname = hostname
        self.id = None

    def start(self):
        out = podman("run", "-d", "--name", self.cname, "--network", self.network,
                     "--hostname", self.hostname, "-v", "%s:/interop:ro" % self.conf_dir,
                     image(self.name), *self.command)
        self.id = out.stdout.decode().strip()
        return self

    def running(self):
        out = podman("inspect", "--format", "{{.State.Running}}", self.id, check=False)
        return out.stdout.decode().strip() == "true"

    def wait_port(self, port, host="127.0.0.1", netns=None, timeout=60):
        """Until HOST:PORT accepts a connection; fails if the container ended."""
        probe = [sys.executable, "-c",
                 "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 1).close()",
                 host, str(port)]
        if netns:
            probe = ["ip", "netns", "exec", netns] + probe

        def accepts():
            if not self.running():
                raise AssertionError("%s ended:\n%s" % (self.cname, self.logs()))
            return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0

        if not wait_until(accepts, timeout):
            raise AssertionError("%s does not accept on %s:%s:\n%s" % (self.cname, host, port, self.logs()))

    def exec(self, *argv, input=None, timeout=60):
        return podman("exec", "-i" if input is not None else "-t=false", self.id, *argv,
                      check=False, timeout=timeout, input=input)

    def read(self, path):
        out = self.exec("cat", path)
        if out.returncode != 0:
            raise FileNotFoundError("%s: %s" % (path, out.stderr.decode(errors="replace")))
        return out.stdout

    def files(self, folder):
        out = self.exec("find", folder, "-type", "f")
        return sorted(out.stdout.decode().split()) if out.returncode == 0 else []

    def logs(self):
        if not self.id:
            return ""
        out = podman("logs", self.id, check=False)
        return (out.stdout + out.stderr).decode(errors="replace")

    def stop(self):
        if self.id:
            podman("rm", "-f", "-t", "2", self.id, check=False)
            self.id = None


if __name__ == "__main__":
    if sys.argv[1:2] != ["build"]:
        sys.exit("usage: mta.py build [NAME...]")
    for n in sys.argv[2:] or sorted(p.name.split(".")[0] for p in IMAGES.glob("*.Containerfile")):
        t0 = time.monotonic()
        print("%s: %s (%.0f s)" % (n, image(n), time.monotonic() - t0), flush=True)
