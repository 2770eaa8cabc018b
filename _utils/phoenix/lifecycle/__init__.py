"""Lifecycle: provisioning an instance while AWS holds it in ``Pending:Wait`` (issues 10 and 11).

Small modules, plain data between them:

* ``identity``  verify an EC2 instance identity document and its signature (who a new minion is)
* ``messages``  lifecycle notifications from SQS: parse, validate, classify
* ``ledger``    the master's durable record of every accepted lifecycle action (sqlite)
* ``options``   settings (``phoenix:lifecycle``)
* ``events``    event tags on the master bus
* ``consumer``  the queue consumer and heartbeat loop the engine runs (ledger first, then delete)
* ``keys``      whether a pending minion key may be accepted (ledger + AWS + identity document)
* ``signal``    CompleteLifecycleAction exactly once, through the ledger
* ``cloud``     what is asked of AWS about an instance (lifecycle state, private IP)
* ``health``    the HTTP check through the instance's NGINX
* ``highstate`` reading a highstate return: the first failed state
"""
