{#-
  Provision one new Auto Scaling instance while AWS holds it in Pending:Wait (runs in the master):

    salt-run state.orchestrate orch.provision pillar='{"instance_id": "i-0123456789abcdef0"}'

  Started by reactor/lifecycle/launching.sls for phoenix/lifecycle/launching/<id>. One state:
  `provision.launching` runs every step in the runner's own process, in order (one salt.runner state per
  step cost Salt's runner start each time, most of the time between steps: bench/provision.py). Every step
  is a runner function that re-reads the ledger and AWS, so a forged event stops at `claim` and signals
  nothing; each can be run alone (`salt-run lifecycle.health_check <id> owner=...`). The steps:

    claim      ledger has the in-flight LAUNCHING action, AWS says Pending:Wait in its group; this run
               becomes the action's only orchestration
    minion     the engine accepted the key (identity document verified) and the minion answers
    highstate  the instance's highstate, failhard (stops at the first failed state): all OS updates
               (salt/os_updates), the deployed commit (salt/deployed_commit, token from the phoenix_secrets
               ext_pillar, open only while the ledger and AWS agree), the role
    reboot     when the OS updates left a reboot-required flag: EC2 RebootInstances, wait for the minion
    health     HTTP from the master through the instance's NGINX: health 200, /console 404, __debugger__ 404
    profile    launch -> runtime instance profile, verified; the launch role's sessions of the instance
               issued before the swap are denied (aws:TokenIssueTime)
    continue   CONTINUE (the secrets window closes: the ledger's action is no longer in flight)
    secrets    the minion refreshes its pillar, dropping the values it held (not an ABANDON reason)
    inventory  the group's salt-ssh roster and known_hosts (not an ABANDON reason)

  At the first failure of a step before `continue` (a failed result or an exception), ABANDON is sent at
  once with the step's reason (event + ledger). A failed `claim` sends nothing: the action is not ours
  (forged/repeated event, or already finished).

  A site's own step: a runner function taking instance_id (and owner) and returning a dict with a boolean
  `result` and a `comment`; add it to `before` below (a name that is not a loaded runner function ABANDONs
  every launch at once, with that reason).
-#}
{%- set instance_id = pillar.get('instance_id') %}

phoenix-provision:
  salt.runner:
    - name: provision.launching
    - instance_id: {{ instance_id | tojson }}
    - before:
      - lifecycle.wait_minion
      - lifecycle.highstate
      - provision.reboot_if_required
      - lifecycle.health_check
      - provision.swap_profile
    - after:
      - provision.close_secrets
      - provision.refresh_inventory
