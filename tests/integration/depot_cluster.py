"""A local Depot cluster for the Python integration tests, started by scripts/cluster.sh exactly
as a user starts one, in a fresh folder; down() stops exactly its processes (cluster.sh stops the
pids it recorded) and removes the folder.

Standard library only (Debian's /usr/bin/python3). DEPOT_BIN_DIR names the binaries (default
build/bin)."""
import os
import shutil
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("DEPOT_BIN_DIR", os.path.join(ROOT, "build", "bin"))
CLUSTER_SH = os.path.join(ROOT, "scripts", "cluster.sh")


class Cluster:
    def __init__(self, base_port, *args, prefix="depot-test-"):
        self.dir = tempfile.mkdtemp(prefix=prefix)
        self.env = dict(os.environ, DEPOT_BIN_DIR=BIN)
        self.base_port = base_port
        self.args = list(args)
        self.cmd("up", "--base-port", str(base_port), "--trackers", "1", *self.args)
        self.load_env()

    def cmd(self, *args):
        r = subprocess.run([CLUSTER_SH, *args, "--dir", self.dir], env=self.env,
                           capture_output=True, text=True, timeout=180)
        if r.returncode != 0:
            raise RuntimeError(f"cluster.sh {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
        return r.stdout

    def load_env(self):
        """Reads cluster.env into self.vars."""
        self.vars = {}
        with open(os.path.join(self.dir, "cluster.env")) as f:
            for line in f:
                if "=" in line:
                    k, v = line.rstrip("\n").split("=", 1)
                    self.vars[k] = v

    def depot(self, *args, timeout=120):
        """Runs the depot CLI against the cluster; its stdout, or RuntimeError on failure."""
        r = subprocess.run([os.path.join(BIN, "depot"), "--trackers", self.vars["DEPOT_TRACKERS"],
                            *args], capture_output=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"depot {' '.join(args)} failed: {r.stderr.decode()}")
        return r.stdout.decode().strip()

    def down(self):
        try:
            self.cmd("down")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
