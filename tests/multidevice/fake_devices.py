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


def free_port() -> int:
    """A free TCP port on localhost (for a `jax.distributed` coordinator)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_commands(commands, env: dict, timeout: float = 600) -> list:
    """Runs every command at once (several `jax.distributed` processes meet in collectives), asserts that each
    exits 0 (showing a failed one's stderr tail) and returns each one's (stdout, stderr). Their output goes to
    files, not pipes: a process blocked on a full pipe, unread while another process is waited for, would
    miss the others' collectives."""
    import tempfile

    with tempfile.TemporaryDirectory() as logs:
        files = [(open(os.path.join(logs, f"{i}.out"), "w+"), open(os.path.join(logs, f"{i}.err"), "w+"))
                 for i in range(len(commands))]
        procs = [subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=err, text=True)
                 for command, (out, err) in zip(commands, files)]
        try:
            for p in procs:
                p.wait(timeout=timeout)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        outs = []
        for out, err in files:
            out.seek(0)
            err.seek(0)
            outs.append((out.read(), err.read()))
            out.close()
            err.close()
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-4000:]
    return outs


def run_script_processes(script: str, argvs, env: dict, timeout: float = 600) -> list:
    """Runs `script` in one process per argument list of `argvs` (`run_commands`) and returns the JSON each
    printed on its `RESULT ` line, in order."""
    import json

    outs = run_commands([[sys.executable, "-c", script, *argv] for argv in argvs], env, timeout)
    return [json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[len("RESULT "):])
            for out, _ in outs]


def two_block_genotype():
    """A 2-block normal/reduction cell pair for the multi-device NAS tests (NASNet-A's 5 blocks would
    triple their compile time); scripts run with the repository as working directory import it too."""
    from azjax import nas

    I = nas.OP_INDEX
    return nas.Genotype(
        normal=[[0, 1, I["conv_1x1"], I["identity"], 0], [2, 1, I["avg_pool_3x3"], I["conv_1x1"], 0]],
        reduce=[[0, 1, I["max_pool_3x3"], I["conv_1x1"], 0], [2, 0, I["identity"], I["avg_pool_3x3"], 0]],
        normal_concat=(3,), reduce_concat=(3,))
