"""Rebuild: replace every instance of an Auto Scaling group, through CloudFormation or instance refresh.

Small modules, plain data between them:

* ``options``   settings (``phoenix:rebuild``) and durations
* ``target``    resolve a stack or group name to the stack, group and launch template/configuration
* ``policy``    stack policy analysis (which resources may change) and the recommended policy
* ``preflight`` gather facts, then decide whether a cycle may start
* ``trigger``   build and send UpdateStack / StartInstanceRefresh
* ``watch``     backoff, snapshots, the tracker that turns snapshots into progress events
* ``status``    per-instance age / lifecycle / launch version rows
* ``progress``  event tags and log lines
* ``cycle``     the whole cycle, tying the above together
"""
