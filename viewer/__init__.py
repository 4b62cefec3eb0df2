"""CXR Enhance viewer: a thin PySide6 layer over `engine` (`cxr-viewer`).

Only this package imports Qt. Image maths lives in `engine.display`, file reading in `engine.io`,
super-resolution in `engine.sr`; the viewer shows their results and runs Enhance off the UI thread.
torch is imported lazily, the first time Enhance is used, so the window opens fast.
"""
