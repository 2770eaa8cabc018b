"""Lifecycle: provisioning an instance while AWS holds it in ``Pending:Wait`` (issues 10 and 11).

Small modules, plain data between them:

* ``identity``  verify an EC2 instance identity document and its signature (who a new minion is)
"""
