"""tea-release: builds, verifies and publishes The Edge Agent as Linux AppImages.

Every step lives in its own module; `release.pipeline` orders them and `tasks.py` exposes them.
"""
