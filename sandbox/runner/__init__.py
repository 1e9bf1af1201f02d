"""The sandbox runner: executes untrusted programs against their tests, one job at a time.

This package is deliberately stand-alone (standard library only, and nothing of this project
outside itself): the local backend binds it read-only into bubblewrap and the docker backend
copies it into the image, so both execute jobs with exactly the same code, started as
``python -I -S -B <this directory>/__main__.py``. It speaks JSON lines:

    stdin  <- {"id", "program", "tests": [...], "setup", "timeout", "memory_mb"}
    stdout -> one outcome object per job (see sandbox/types.py: Outcome)

Each job runs in a forked child (``unsafe_execute``) with rlimits, a fresh temporary directory,
stdin closed, an empty environment and captured output; a judge (``unsafe_judge``) runs its
JUDGED tests. The parent enforces the wall clock, decides every test and, when started with
``--sweep`` inside its own PID namespace, kills every other process in that namespace after
each job so that no daemonised grandchild survives.

Isolation (no network, no host files, no host processes) is NOT this package's job: it comes
from the namespace or container around it. This package only makes grading honest and bounded.

Modules, by job (docs/SANDBOX.md tells the whole design):

- ``startup``: the runner process (options, prctl, scratch directory, environment, the loop);
- ``parent``: ``Runner``, each job from its line to its outcome; ``watch``: a job while it runs;
- ``zygote``: the process that forks each job's processes;
- ``child``: the program's process; ``judge``: the judge's; ``isolation``: what both do first;
- ``jobs``: a job validated and what each process is sent; ``plans``: its code compiled and each
  test planned (VALUE or JUDGED); ``grading``: the verdict and the outcome object;
- ``plain``: values as plain data; ``wire``: messages and writes over pipes; ``reports``: the
  error reports with trimmed tracebacks; ``names``: the job's file and module names;
  ``cleanup``: the processes and files a job leaves.

This file imports nothing: ``__main__`` imports the package with the directory above it on
``sys.path``, where other modules may lie.
"""
