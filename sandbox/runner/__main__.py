"""Start the runner: ``python -I -S -B <this directory>/__main__.py [--sweep] [--cpu-slot K]``.

The package is imported from the directory above this one, which is on ``sys.path`` for that
one import only (the package's ``__init__`` imports nothing, and this directory itself is never
there); its modules then come through the package's own ``__path__``, and a job's processes
find only the standard library on ``sys.path``. Started as a file, not as a directory (which
works too): a directory runs through ``runpy``, whose frames would sit under every job's.
"""

import os
import sys

if __name__ == "__main__":
    package = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry) != package]
    sys.path.insert(0, os.path.dirname(package))
    # The package's name where it runs (the checker knows it as sandbox.runner). The directory
    # above may hold other modules: only this one is imported from it.
    import runner  # type: ignore[import-not-found]  # noqa: F401

    del sys.path[0]
    from runner.startup import main  # type: ignore[import-not-found]

    sys.exit(main(sys.argv[1:]))
