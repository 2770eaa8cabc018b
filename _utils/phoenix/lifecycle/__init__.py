"""Lifecycle: provision a new Auto Scaling instance through Salt while AWS holds it in ``Pending:Wait``.

Small modules, plain data between them (the master side):

* ``messages``  lifecycle notifications from SQS: parse, validate, classify
* ``ledger``    the master's durable record of every accepted lifecycle action (sqlite)
* ``options``   settings (``phoenix:lifecycle``)
* ``events``    event tags and payloads on the master bus
* ``consumer``  the queue consumer and heartbeat loop the engine runs (ledger first, then delete)
* ``keys``      whether a pending minion key may be accepted (ledger + AWS + identity document)
* ``signal``    CompleteLifecycleAction exactly once, through the ledger
* ``health``    the HTTP check through the instance's NGINX
* ``highstate`` reading a highstate return: the first failed state
* ``identity``  verifying an EC2 instance identity document (instance side, ``i10b``)
"""
