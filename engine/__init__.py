"""CXR Enhance headless core: reading radiographs, the display pipeline and super-resolution.

Never imports Qt. `engine.io` and `engine.display` are numpy + pydicom only; `engine.sr` holds
everything that needs torch.
"""

__version__ = "0.1.0"
