"""Phoenix: serve only the URLs you know about, rebuild every server daily.

This package holds the pure logic. The Salt loader modules in ``_modules``/``_states``
(shipped inside the wheel as ``phoenix.saltext.*``) are thin wrappers around it.
Keep this file import-free: Salt's utils loader executes it when the repo is synced.
"""

__version__ = "0.1.0"
