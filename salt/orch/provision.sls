{#-
  Provision one new Auto Scaling instance while AWS holds it in Pending:Wait (runs in the master):

    salt-run state.orchestrate orch.provision pillar='{"instance_id": "i-0123456789abcdef0"}'

  Started by reactor/lifecycle/launching.sls for phoenix/lifecycle/launching/<id>. Every step is a
  `lifecycle` runner that re-reads the ledger and AWS, so a forged event stops at `claim` and signals
  nothing. The steps, in order (each requires the one before):

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

  At the first failure `abandon` sends ABANDON at once with the failing step's reason (event + ledger).
  A failed `claim` sends nothing: the action is not ours (forged/repeated event, or already finished).
-#}
{%- set instance_id = pillar.get('instance_id') %}
{%- set owner = 'orch-' ~ salt['random.get_str'](24, punctuation=False) %}
{%- set steps = ['phoenix-provision-minion', 'phoenix-provision-highstate', 'phoenix-provision-reboot',
                 'phoenix-provision-health', 'phoenix-provision-profile'] %}

phoenix-provision-claim:
  salt.runner:
    - name: lifecycle.claim
    - instance_id: {{ instance_id | tojson }}
    - kind: launching
    - owner: {{ owner | tojson }}

phoenix-provision-minion:
  salt.runner:
    - name: lifecycle.wait_minion
    - instance_id: {{ instance_id | tojson }}
    - owner: {{ owner | tojson }}
    - require:
      - salt: phoenix-provision-claim

phoenix-provision-highstate:
  salt.runner:
    - name: lifecycle.highstate
    - instance_id: {{ instance_id | tojson }}
    - owner: {{ owner | tojson }}
    - require:
      - salt: phoenix-provision-minion

phoenix-provision-reboot:
  salt.runner:
    - name: provision.reboot_if_required
    - instance_id: {{ instance_id | tojson }}
    - owner: {{ owner | tojson }}
    - require:
      - salt: phoenix-provision-highstate

phoenix-provision-health:
  salt.runner:
    - name: lifecycle.health_check
    - instance_id: {{ instance_id | tojson }}
    - owner: {{ owner | tojson }}
    - require:
      - salt: phoenix-provision-reboot

phoenix-provision-profile:
  salt.runner:
    - name: provision.swap_profile
    - instance_id: {{ instance_id | tojson }}
    - owner: {{ owner | tojson }}
    - require:
      - salt: phoenix-provision-health

phoenix-provision-continue:
  salt.runner:
    - name: lifecycle.complete
    - instance_id: {{ instance_id | tojson }}
    - result: CONTINUE
    - kind: launching
    - owner: {{ owner | tojson }}
    - require:
      - salt: phoenix-provision-profile

phoenix-provision-secrets-closed:
  salt.runner:
    - name: provision.close_secrets
    - instance_id: {{ instance_id | tojson }}
    - require:
      - salt: phoenix-provision-continue

phoenix-provision-inventory:
  salt.runner:
    - name: provision.refresh_inventory
    - instance_id: {{ instance_id | tojson }}
    - require:
      - salt: phoenix-provision-continue

phoenix-provision-abandon:
  salt.runner:
    - name: lifecycle.complete
    - instance_id: {{ instance_id | tojson }}
    - result: ABANDON
    - kind: launching
    - owner: {{ owner | tojson }}
    - require:
      - salt: phoenix-provision-claim
    - onfail_any:
{%- for step in steps %}
      - salt: {{ step }}
{%- endfor %}
