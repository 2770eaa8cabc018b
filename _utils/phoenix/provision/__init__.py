"""Provisioning part 2: what happens to a new instance between its highstate and ``CONTINUE``.

One module per concern, each pure logic over :mod:`phoenix.aws` (no Salt imports):

* :mod:`.commit`    the deployed commit: read the wanted SHA from S3, deploy exactly it from git, record it;
* :mod:`.secrets`   the secrets window: SSM references compiled only while the ledger and AWS agree;
* :mod:`.profile`   the launch -> runtime instance profile swap, its verification and the revocation of
                    credentials issued under the launch role;
* :mod:`.osupdate`  all OS updates in the foreground and the reboot-required check;
* :mod:`.inventory` salt-ssh roster and ``known_hosts`` from AWS plus host keys reported over Salt.

Every failure is a :class:`~phoenix.provision.errors.ProvisionError` whose message is the ``ABANDON``
reason: it names the step, the input and what to do.
"""
