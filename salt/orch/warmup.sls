{#-
  Load what provisioning needs into the reactor's process (runs in the master):

    salt-run state.orchestrate orch.warmup

  Started by reactor/lifecycle/warmup.sls when the lifecycle engine starts. The same path as
  orch.provision (state.orchestrate -> salt.runner -> a lifecycle runner), with a step that only loads the
  ledger, boto3 and its clients: no AWS call, no instance, nothing signalled.
-#}
phoenix-lifecycle-warmup:
  salt.runner:
    - name: lifecycle.warmup
