"""Deployment runtimes as plugins, INT8 calibration on training images, and mAP measured
through a runtime (`python -m lightyolo.deploy`); docs/deployment.md says how to use them."""
