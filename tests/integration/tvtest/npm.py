"""npm packages for the tests that run a real Node.js SDK: installed pinned into a directory of
the build dir (TV_BIN_DIR), once per build dir (a stamp file lists what was installed)."""
import os
import shutil
import subprocess

from .caps import Unavailable


def npm_modules(subdir, packages, what, timeout_s=240):
    """BUILD/subdir/node_modules with packages (pinned "name@version" strings) installed. Raises
    Unavailable (the test reports SKIP) without node/npm or when npm install fails; what names
    the packages in that reason."""
    if not shutil.which("node") or not shutil.which("npm"):
        raise Unavailable("node/npm not installed (scripts/deps.sh installs them)")
    prefix = os.path.join(os.environ["TV_BIN_DIR"], subdir)
    stamp = os.path.join(prefix, "installed.txt")
    want = "\n".join(packages) + "\n"
    if os.path.exists(stamp) and open(stamp).read() == want:
        return os.path.join(prefix, "node_modules")
    p = subprocess.run(["npm", "install", "--prefix", prefix, "--no-audit", "--no-fund",
                        "--prefer-offline"] + list(packages),
                       capture_output=True, text=True, timeout=timeout_s)
    if p.returncode != 0:
        raise Unavailable("npm install of %s failed: %s"
                          % (what, p.stderr.strip().splitlines()[-1:]))
    with open(stamp, "w") as f:
        f.write(want)
    return os.path.join(prefix, "node_modules")
