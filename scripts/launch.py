"""Starts a multi-process run on this machine: N processes joined by a coordinator on
127.0.0.1, as a pod or a cluster would start them on N hosts.

  python scripts/launch.py --processes=2 --cpu_devices=2 -- \
      python -m dti_jax.main --config=configs/digits.py --workdir=workdirs/digits_2p

Each process gets JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID (and,
with --cpu_devices, that many emulated CPU devices); ``--multihost`` is added to the
command when it lacks it. Process 0's output passes through; the others' lines are
prefixed with ``[process i]``. SIGTERM or SIGINT to the launcher goes to every process
(the run checkpoints at one agreed step and exits 0). When a process exits with an
error or dies, the launcher says which in one line, stops the others and exits 1.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time

GRACE_SECONDS = 10   # the others' time to stop on SIGTERM after a peer died


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _how(code: int) -> str:
  if code < 0:
    return f"was killed by {signal.Signals(-code).name}"
  return f"exited with status {code}"


def _relay(stream, prefix: str, out, quiet: threading.Event) -> None:
  """Copies a process's lines, until a failure makes the dying processes' dumps noise."""
  for line in stream:
    if not quiet.is_set():
      out.write(prefix + line)
      out.flush()


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
  """(options, the command after ``--``); exits with one line on bad usage."""
  if "--" not in argv:
    sys.exit("error: give the command after --, e.g. launch.py --processes=2 -- "
             "python -m dti_jax.main --config=... --workdir=...")
  split = argv.index("--")
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--processes", type=int, required=True, help="how many processes")
  parser.add_argument("--cpu_devices", type=int, default=0,
                      help="emulated CPU devices per process (0: the platform's devices)")
  parser.add_argument("--port", type=int, default=0, help="coordinator port (0: a free one)")
  options = parser.parse_args(argv[:split])
  command = argv[split + 1:]
  if options.processes < 1:
    sys.exit(f"error: --processes={options.processes} must be at least 1")
  if not command:
    sys.exit("error: no command after --")
  if "--multihost" not in command:
    command = command + ["--multihost"]
  return options, command


def main(argv: list[str]) -> int:
  options, command = parse_args(argv)
  address = f"127.0.0.1:{options.port or _free_port()}"
  processes, relays, quiet = [], [], threading.Event()
  for index in range(options.processes):
    env = dict(os.environ, JAX_COORDINATOR_ADDRESS=address,
               JAX_NUM_PROCESSES=str(options.processes), JAX_PROCESS_ID=str(index))
    if options.cpu_devices:
      env["JAX_NUM_CPU_DEVICES"] = str(options.cpu_devices)
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    prefix = "" if index == 0 else f"[process {index}] "
    for stream, out in ((process.stdout, sys.stdout), (process.stderr, sys.stderr)):
      relay = threading.Thread(target=_relay, args=(stream, prefix, out, quiet),
                               daemon=True)
      relay.start()
      relays.append(relay)
    processes.append(process)

  def forward(signum, frame):
    del frame
    for process in processes:
      if process.poll() is None:
        process.send_signal(signum)

  signal.signal(signal.SIGTERM, forward)
  signal.signal(signal.SIGINT, forward)
  status = 0
  while any(process.poll() is None for process in processes):
    failed = [(i, p.returncode) for i, p in enumerate(processes)
              if p.returncode not in (None, 0)]
    if failed and any(p.poll() is None for p in processes):
      index, code = failed[0]
      quiet.set()
      print(f"error: process {index} {_how(code)}; stopping the other processes "
            "(the last checkpoint is kept)", file=sys.stderr, flush=True)
      forward(signal.SIGTERM, None)
      deadline = time.monotonic() + GRACE_SECONDS
      while time.monotonic() < deadline and any(p.poll() is None for p in processes):
        time.sleep(0.2)
      for process in processes:
        if process.poll() is None:
          process.kill()
      status = 1
      break
    time.sleep(0.2)
  for process in processes:
    process.wait()
  for relay in relays:
    relay.join(timeout=5)
  if status == 0 and any(p.returncode != 0 for p in processes):
    # All ended before the loop saw one fail (a peer aborts within a second of process
    # 0's death): name the first in order, which is process 0 in that case.
    index, code = next((i, p.returncode) for i, p in enumerate(processes) if p.returncode)
    print(f"error: process {index} {_how(code)}; the other processes stopped too (the "
          "last checkpoint is kept)", file=sys.stderr, flush=True)
    status = 1
  return status


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
