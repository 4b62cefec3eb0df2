"""Frozen entry point of `cxr-enhance` (build.spec). Same as the `cxr-enhance` console script.

`cxr-enhance bench` measures each configuration in a child started as
`sys.executable -m engine.sr.bench ...`; frozen, sys.executable is this program, so
`-m engine.<module>` is run here the way Python would run it.
"""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    if len(sys.argv) > 2 and sys.argv[1] == "-m" and sys.argv[2].startswith("engine."):
        import runpy

        module = sys.argv[2]
        sys.argv = [sys.argv[0], *sys.argv[3:]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        raise SystemExit(0)
    from engine.cli import main

    raise SystemExit(main(sys.argv[1:]))
