"""Development tools shared by the tests, the benchmarks and the demo: real servers on 127.0.0.1.

Nothing here is used in production. Every server started here is stopped by its ``stop()``/context
manager; all of them bind 127.0.0.1 only.
"""
