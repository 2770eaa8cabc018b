{#-
  Retire one terminating Auto Scaling instance while AWS holds it in Terminating:Wait (runs in the master):

    salt-run state.orchestrate orch.retire pillar='{"instance_id": "i-0123456789abcdef0"}'

  Started by reactor/lifecycle/terminating.sls. One state, `provision.terminating`, runs the steps in the
  runner's own process: `claim` re-reads the ledger and AWS (a forged event stops there); then the
  instance's minion key is deleted and its minion data cache flushed (lifecycle.retire) and its
  launch-session revocation policies removed (provision.forget); then CONTINUE (the instance terminates,
  even when the clean-up failed); then the group's roster / known_hosts are refreshed (it is
  Terminating:Wait, so it drops out).
-#}
{%- set instance_id = pillar.get('instance_id') %}

phoenix-retire:
  salt.runner:
    - name: provision.terminating
    - instance_id: {{ instance_id | tojson }}
    - before:
      - lifecycle.retire
      - provision.forget
    - after:
      - provision.refresh_inventory
