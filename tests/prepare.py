"""Run by `make test` before pytest: start (or install) what the suite needs that a fresh machine lacks."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from shared.embedded import ensure_redis


def main() -> None:
    # Here, not at import: the accessibility test imports AXE_SCRIPT from this module.
    logging.basicConfig(level=logging.INFO, format="prepare: %(message)s")
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    started = ensure_redis(url, Path(".data/test-redis"))
    # A Redis started here must outlive this script: the test run uses it.
    logging.info("redis at %s %s", url, "started" if started else "already running")
    ensure_promtool()
    ensure_faketime()
    ensure_chromium()
    ensure_axe()


# apt must not start the package's system service: tests start their own Prometheus on a free port.
_NO_SERVICE_START = "#!/bin/sh\nexit 101\n"


def ensure_promtool() -> None:
    """Install Debian's `prometheus` (promtool and the server, for tests/deploy) when missing."""
    present = shutil.which("promtool") and shutil.which("prometheus")
    if present or os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    policy = Path("/usr/sbin/policy-rc.d")
    added = not policy.exists()
    if added:
        policy.write_text(_NO_SERVICE_START)
        policy.chmod(0o755)
    try:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "prometheus"]
        subprocess.run(install, check=True, env=env)
    finally:
        if added:
            policy.unlink()
    if subprocess.run(["pgrep", "-u", "prometheus"], capture_output=True).returncode == 0:
        subprocess.run(["/etc/init.d/prometheus", "stop"], check=False)
    logging.info("promtool installed: %s", shutil.which("promtool"))


def ensure_faketime() -> None:
    """Install Debian's `faketime` (libfaketime, for the consent clock-step test) when missing."""
    present = any(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    if present or os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    apt_install("faketime")
    logging.info("libfaketime installed")


def apt_install(package: str) -> None:
    """Debian's `package`, without its recommends (callers check root and apt-get first)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package]
    subprocess.run(install, check=True, env=env)


CHROMIUM = Path("/usr/bin/chromium")


def ensure_chromium() -> None:
    """Install Debian's `chromium` (the preference center's browser tests) when missing: Playwright
    drives it by path, so no browser is ever downloaded."""
    if CHROMIUM.exists() or os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    apt_install("chromium")
    logging.info("chromium installed")


# axe-core (the preference center's accessibility check), from the npm registry by `npm pack`:
# the test injects this file into the page, so nothing is fetched from a CDN at test time.
AXE_VERSION = "4.14.1"
AXE_SCRIPT = Path(__file__).parent / ".cache" / f"axe-core-{AXE_VERSION}" / "axe.min.js"


def ensure_axe() -> None:
    """Unpack axe-core's `axe.min.js` into tests/.cache (npm verifies the tarball's integrity)."""
    if AXE_SCRIPT.exists():
        return
    if not shutil.which("npm") and os.geteuid() == 0 and shutil.which("apt-get"):
        apt_install("npm")
    if not shutil.which("npm"):
        return
    with tempfile.TemporaryDirectory() as tmp:
        pack = ["npm", "pack", f"axe-core@{AXE_VERSION}", "--silent", "--pack-destination", tmp]
        subprocess.run(pack, check=True, stdout=subprocess.DEVNULL)
        with tarfile.open(next(Path(tmp).glob("axe-core-*.tgz"))) as tar:
            script = tar.extractfile("package/axe.min.js")
            assert script is not None, "axe-core's package has no axe.min.js"
            AXE_SCRIPT.parent.mkdir(parents=True, exist_ok=True)
            AXE_SCRIPT.write_bytes(script.read())
    logging.info("axe-core %s unpacked into %s", AXE_VERSION, AXE_SCRIPT.parent)


if __name__ == "__main__":
    main()
