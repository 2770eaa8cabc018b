{#-
  Retire one terminating Auto Scaling instance while AWS holds it in Terminating:Wait (runs in the master):

    salt-run state.orchestrate orch.retire pillar='{"instance_id": "i-0123456789abcdef0"}'

  Started by reactor/lifecycle/terminating.sls. `claim` re-reads the ledger and AWS (a forged event stops
  there); then the instance's minion key is deleted and its minion data cache flushed; then CONTINUE (the
  instance terminates, even when the clean-up failed). Then the instance's launch-session revocation policies
  are removed and the group's roster / known_hosts refreshed (it is Terminating:Wait, so it drops out).
-#}
{%- set instance_id = pillar.get('instance_id') %}
{%- set owner = 'orch-' ~ salt['random.get_str'](24, punctuation=False) %}

phoenix-retire-claim:
  salt.runner:
    - name: lifecycle.claim
    - instance_id: {{ instance_id | tojson }}
    - kind: terminating
    - owner: {{ owner | tojson }}

phoenix-retire-forget:
  salt.runner:
    - name: lifecycle.retire
    - instance_id: {{ instance_id | tojson }}
    - owner: {{ owner | tojson }}
    - require:
      - salt: phoenix-retire-claim

phoenix-retire-profile-policies:
  salt.runner:
    - name: provision.forget
    - instance_id: {{ instance_id | tojson }}
    - require:
      - salt: phoenix-retire-claim

phoenix-retire-inventory:
  salt.runner:
    - name: provision.refresh_inventory
    - instance_id: {{ instance_id | tojson }}
    - require:
      - salt: phoenix-retire-forget

phoenix-retire-continue:
  salt.runner:
    - name: lifecycle.complete
    - instance_id: {{ instance_id | tojson }}
    - result: CONTINUE
    - kind: terminating
    - owner: {{ owner | tojson }}
    - require:
      - salt: phoenix-retire-claim
{#- after phoenix-retire-forget (file order) even if that failed: the instance terminates either way #}
