"""Frozen entry point of `cxr-viewer` (build.spec). Same as the `cxr-viewer` console script,
`--self-test` included (viewer.app hands it to viewer.selftest)."""

import multiprocessing

if __name__ == "__main__":
    # First thing: a helper process started by viewer.decoding (spawn) re-runs this executable.
    multiprocessing.freeze_support()
    from viewer.app import main

    raise SystemExit(main())
