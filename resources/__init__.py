"""Data files of CXR Enhance (models, samples, icons). Installed as `cxr_enhance_resources`."""
