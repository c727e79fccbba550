"""Runs a test script in a fresh Python with 8 fake CPU devices (the device count is fixed at JAX start-up)."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_on_8_cpu_devices(script: str, timeout: float = 900) -> None:
    """Asserts that `script` exits 0 and prints OK; shows its stderr tail otherwise."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-4000:]
